// A real S3-compatible server (s3rver) in its own process, so that tests can kill it like a
// store that goes down: `node s3rver-main.js DIRECTORY [PORT]` prints `listening PORT`.
import S3rver from "s3rver";

const [directory, port] = process.argv.slice(2);
const server = new S3rver({
  address: "127.0.0.1",
  port: Number(port ?? 0),
  directory: directory as string,
  silent: true,
  configureBuckets: [{ name: "assets", configs: [] }],
});
const { port: bound } = await server.run();
process.stdout.write(`listening ${bound}\n`);
process.on("SIGTERM", () => server.close().then(() => process.exit(0)));
