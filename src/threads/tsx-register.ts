/**
 * Imported first by a model thread when the main thread runs under tsx on a Node that cannot
 * tell its own loader thread from a worker (before `worker_threads.isInternalThread`): tsx then
 * registers its loader on the main thread only, and a thread could not import the `.ts` models
 * the main thread did. Registering it here gives the thread the same loader.
 */
import { register } from "tsx/esm/api";

register();
