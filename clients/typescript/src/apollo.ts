// An Apollo Client set up for Kabinet: the cache's type policies and a link that sends
// the Bearer token. A React app imports the same names from "@apollo/client"; this
// starter uses "@apollo/client/core" so that it needs no React.
import {
  ApolloClient,
  ApolloLink,
  HttpLink,
  InMemoryCache,
  type NormalizedCacheObject,
  type TypePolicies,
} from "@apollo/client/core";
import { relayStylePagination } from "@apollo/client/utilities";

/**
 * How the cache stores Kabinet's answers.
 *
 * - Objects with an `id` (Subscriber, Contract, Payment, LedgerEntry, Tariff, TvPackage,
 *   every `Node`) are normalised by `__typename` + `id`, Apollo's default: a mutation
 *   payload that returns `contract { id ... }` updates every query showing that contract.
 * - Connections are Relay connections (`edges { cursor node }`, `pageInfo`) paged with
 *   `first`/`after`. `relayStylePagination(keyArgs)` merges the pages of one list; the
 *   key arguments are the filters, so a ledger filtered by kind or period is a list of its
 *   own while `first` and `after` only page through it.
 * - Balance, PromisedPaymentOffer and BonusAccount have an `id` (one per contract or
 *   subscriber): they are normalised too, so a smaller selection merges into what is
 *   cached and a money mutation's payload (`contract { balance { id ... } }`) updates the
 *   overview in place.
 */
export const typePolicies: TypePolicies = {
  Query: {
    fields: {
      // staff lists
      subscribers: relayStylePagination(["search"]),
      supportRequests: relayStylePagination(["status"]),
      auditLog: relayStylePagination(["action"]),
    },
  },
  Contract: {
    fields: {
      ledger: relayStylePagination(["kinds", "from", "to"]),
      payments: relayStylePagination(),
    },
  },
  BonusAccount: {
    fields: {
      history: relayStylePagination(),
    },
  },
};

export function createCache(): InMemoryCache {
  return new InMemoryCache({ typePolicies });
}

export interface KabinetClientOptions {
  /** The API, e.g. "http://127.0.0.1:8000/graphql" (list your origin in KABINET_CORS_ORIGINS). */
  uri: string;
  /** The current access token, or null when signed out; read on every request. */
  getAccessToken: () => string | null;
}

export function createClient({ uri, getAccessToken }: KabinetClientOptions): ApolloClient<NormalizedCacheObject> {
  const auth = new ApolloLink((operation, forward) => {
    const token = getAccessToken();
    if (token) {
      operation.setContext(({ headers = {} }: { headers?: Record<string, string> }) => ({
        headers: { ...headers, Authorization: `Bearer ${token}` },
      }));
    }
    return forward(operation);
  });
  // credentials "omit": from another origin Kabinet wants the Bearer token, and refuses
  // a cross-site request that carries its session cookie (README, "What a client may
  // rely on"). Same-origin pages served by Kabinet may use "same-origin" instead.
  const http = new HttpLink({ uri, credentials: "omit" });
  return new ApolloClient({
    link: auth.concat(http),
    cache: createCache(),
  });
}
