// Libraries and apps for tests, each closed by the test's teardown on the line it is made.

import { Writable } from "node:stream";
import { ModelLibrary, type ModelLibraryOptions } from "modelkit-ts";
import { createServer, type ServerOptions } from "modelkit-ts/server";
import type { Test } from "tap";

/** A compiled fixture module's URL: `fixtureUrl("server-models")`. */
export const fixtureUrl = (name: string): string =>
  new URL(`../fixtures/${name}.js`, import.meta.url).href;

/** A library that the test's teardown closes; loaded unless `load: false`. */
export async function makeLibrary(
  t: Test,
  options: ModelLibraryOptions & { load?: boolean },
): Promise<ModelLibrary> {
  const { load = true, ...rest } = options;
  const library = new ModelLibrary(rest);
  t.teardown(() => library.close());
  if (load) await library.load();
  return library;
}

/** Log lines written to a stream, parsed as they come. */
export function logSink(): { lines: Record<string, unknown>[]; stream: Writable } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, stream };
}

export type App = Awaited<ReturnType<typeof createServer>>;

/**
 * An app serving a new library of `models` (`requiredModels` when given), logging at info into
 * `logs`; the test's teardown closes it (and so the library). The library is loaded unless
 * `load: false`.
 */
export async function makeApp(
  t: Test,
  options: Partial<ServerOptions> & {
    models: NonNullable<ModelLibraryOptions["models"]>;
    requiredModels?: ModelLibraryOptions["requiredModels"];
    settings?: ModelLibraryOptions["settings"];
    load?: boolean;
  },
): Promise<{ app: App; library: ModelLibrary; logs: Record<string, unknown>[] }> {
  const { models, requiredModels, settings, load = true, ...server } = options;
  const library = new ModelLibrary({
    models,
    ...(requiredModels === undefined ? {} : { requiredModels }),
    ...(settings === undefined ? {} : { settings }),
  });
  const { lines, stream } = logSink();
  const app = await createServer({ library, logger: { level: "info", stream }, ...server });
  t.teardown(() => app.close());
  if (load) await library.load();
  return { app, library, logs: lines };
}
