import { z } from "zod";

/** The small object both the bare route and the modelkit-ts model parse: the same work. */
export const echoItem = z.object({
  id: z.number().int(),
  text: z.string().max(200),
  tags: z.array(z.string()).max(8).default([]),
});

export type EchoItem = z.infer<typeof echoItem>;

/** The body every overhead request posts. */
export const ECHO_BODY = JSON.stringify({ id: 42, text: "the quick brown fox", tags: ["a", "b"] });
