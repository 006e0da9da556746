// graphql-codegen: TypeScript types and typed documents for the operations in
// src/operations/, checked against Kabinet's schema.graphql (generated from the server's
// code; the repository root). `npm run codegen`, or `make starter-check` at the root.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/operations/*.graphql"],
  ignoreNoDocuments: false,
  generates: {
    "src/generated/graphql.ts": {
      plugins: ["typescript", "typescript-operations", "typed-document-node"],
      config: {
        // Every custom scalar must be mapped: a new scalar in the schema fails the
        // build instead of silently becoming `any`.
        strictScalars: true,
        scalars: {
          // "1234.50": keep money a string end to end; never parse it into a float.
          // Format it with Intl.NumberFormat, add it up with a decimal library.
          Money: "string",
          // "2026-01-31"
          Date: "string",
          // ISO 8601 with a zone, "2026-01-31T09:30:00+00:00"
          DateTime: "string",
          // Global IDs are opaque strings (pass them back as they came).
          ID: "string",
        },
        enumsAsTypes: true,
        useTypeImports: true,
      },
    },
  },
};

export default config;
