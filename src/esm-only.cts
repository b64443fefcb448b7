/**
 * What `require("modelkit-ts")` (and its subpaths) load: modelkit-ts is ES modules only, and
 * says so here rather than with Node's `No "exports" main defined`. A CommonJS user hits this
 * too by writing `import` in a .ts file that tsx or ts-node compiles to CommonJS (a package.json
 * without `"type": "module"`).
 */
throw Object.assign(
  new Error(
    'modelkit-ts is an ES module package and cannot be loaded with require(). Use `import { ... } from "modelkit-ts"` in an ES module: a .mjs or .mts file, or a .js or .ts file in a package whose package.json has "type": "module" (tsx and ts-node compile .ts files to CommonJS without it). From CommonJS, use `await import("modelkit-ts")`.',
  ),
  { code: "ERR_REQUIRE_ESM" },
);
