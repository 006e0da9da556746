// PostGraphile 5 (amber preset, default inflection) over the benchmark database, as an
// operator would run it: node:http + grafserv, no GraphiQL, no watch mode, no JWT.
// It does NOT authenticate: the benchmark asks for a subscriber by id.
//   DATABASE_URL=postgres://postgres@127.0.0.1/kabinet_bench PORT=5678 node postgraphile.mjs
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [
    makePgService({
      connectionString: process.env.DATABASE_URL,
      schemas: ["public"],
      poolConfig: { max: 10 },
    }),
  ],
  grafserv: { graphqlPath: "/graphql", graphiql: false, watch: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error(error);
  process.exit(1);
});
await serv.addTo(server);
const port = Number(process.env.PORT || 5678);
server.listen(port, "127.0.0.1", () => console.log(`postgraphile listening on ${port}`));
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    pgl.release().finally(() => process.exit(0));
  });
}
