import type { z } from "zod";

/**
 * What a modelkit-ts service serves, read from the types of the model classes it loads: no
 * code generation, no runtime import. `M` is anything whose properties are model classes: a
 * module namespace (`typeof import("./models.js")`), an intersection of them, or an object type
 * such as `{ Sentiment: typeof Sentiment }`. Exports that are not model classes, and classes
 * without configurations of their own (an abstract base), are left out.
 */

/** The configuration names a class declares literally (a base class's `string` keys are not names). */
type NamesOf<C> = C extends { kind: "sync" | "async"; configurations: infer R }
  ? string extends keyof R
    ? never
    : Extract<keyof R, string>
  : never;

/** `predict`'s own parameter and answer, for a class without schemas. */
type Predicted<C> = C extends abstract new (
  ...args: never[]
) => { predict(item: infer I, ...rest: never[]): infer R }
  ? { item: I; result: Awaited<R> }
  : { item: unknown; result: unknown };

/** What a client sends: the item schema's input type (defaults may be left out), else `predict`'s parameter. */
export type ItemOf<C> = C extends { itemSchema: infer S extends z.ZodType }
  ? z.input<S>
  : Predicted<C>["item"];

/** What a client gets back: the return schema's output type, else `predict`'s answer. */
export type ResultOf<C> = C extends { returnSchema: infer S extends z.ZodType }
  ? z.output<S>
  : Predicted<C>["result"];

/** Every configuration name the classes of `M` declare. */
export type ModelName<M> = { [K in keyof M]: NamesOf<M[K]> }[keyof M];

/** The class of `M` that declares the configuration `N`. */
type ClassNamed<M, N extends string> = {
  [K in keyof M]: N extends NamesOf<M[K]> ? M[K] : never;
}[keyof M];

/**
 * Each served model's item and result types, by configuration name.
 *
 * @example
 * type Served = ModelCatalog<typeof import("./models.js")>;
 * type SentimentItem = Served["sentiment"]["item"]; // { text: string }
 */
export type ModelCatalog<M> = {
  [N in ModelName<M>]: { item: ItemOf<ClassNamed<M, N>>; result: ResultOf<ClassNamed<M, N>> };
};
