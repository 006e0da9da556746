// A tiny front end without a UI: every function sends one of the operations in
// src/operations/ through the Apollo client of src/apollo.ts, with the types that
// graphql-codegen generated from schema.graphql. `tsc --noEmit` checking this file is
// what tells a schema change that breaks a front end (`make starter-check`).
import type { ApolloClient, NormalizedCacheObject } from "@apollo/client/core";

import { createClient } from "./apollo";
import {
  AccountOverviewDocument,
  ActivatePromisedPaymentDocument,
  ConnectTvPackageDocument,
  ContractLedgerDocument,
  CreateTopUpDocument,
  LoginDocument,
  RefreshSessionDocument,
  type AccountOverviewQuery,
  type ContractCardFragment,
  type ContractLedgerQuery,
  type ErrorCode,
  type LedgerKind,
  type PaymentMethod,
  type UserErrorFieldsFragment,
} from "./generated/graphql";

/** Tokens live in memory only (not localStorage): a reload signs in again or refreshes. */
interface Tokens {
  accessToken: string;
  refreshToken: string;
  expiresAt: string; // DateTime: ISO 8601 with a zone
}

let tokens: Tokens | null = null;

export const client: ApolloClient<NormalizedCacheObject> = createClient({
  uri: "http://127.0.0.1:8000/graphql",
  getAccessToken: () => tokens?.accessToken ?? null,
});

/** A mutation's expected failures, for the form that sent it. */
export class UserErrors extends Error {
  constructor(readonly errors: readonly UserErrorFieldsFragment[]) {
    super(errors.map((error) => error.message).join(" "));
  }

  /** Which input field to highlight, if the server named one. */
  fieldsInError(): string[] {
    return this.errors.flatMap((error) => (error.field ? [error.field] : []));
  }
}

/** What the UI does about an error code. New codes may appear: keep a default branch. */
export function advice(code: ErrorCode, retryAfterSeconds: number | null | undefined): string {
  switch (code) {
    case "RATE_LIMITED":
      return `Try again in ${retryAfterSeconds ?? 60} s.`;
    case "INVALID_CREDENTIALS":
      return "Check the login and the password.";
    case "INSUFFICIENT_FUNDS":
      return "Top up the balance first.";
    case "NOT_ELIGIBLE":
      return "Not available for this contract now.";
    default:
      return "";
  }
}

function check(errors: readonly UserErrorFieldsFragment[]): void {
  if (errors.length > 0) {
    throw new UserErrors(errors);
  }
}

export async function signIn(identifier: string, password: string): Promise<boolean> {
  const { data } = await client.mutate({
    mutation: LoginDocument,
    variables: { input: { identifier, password } },
  });
  const login = data?.login;
  if (!login) {
    return false;
  }
  check(login.errors);
  if (login.accessToken && login.refreshToken && login.expiresAt) {
    tokens = {
      accessToken: login.accessToken,
      refreshToken: login.refreshToken,
      expiresAt: login.expiresAt,
    };
  }
  return login.mustChangePassword; // true: send the user to changePassword first
}

/** Call before `expiresAt` or after an UNAUTHENTICATED error; once, in one place. */
export async function refresh(): Promise<void> {
  if (!tokens) {
    return;
  }
  const { data } = await client.mutate({
    mutation: RefreshSessionDocument,
    variables: { input: { refreshToken: tokens.refreshToken } },
  });
  const payload = data?.refreshSession;
  if (!payload || payload.errors.length > 0 || !payload.accessToken || !payload.refreshToken) {
    tokens = null; // the session has ended: sign in again
    await client.clearStore();
    return;
  }
  tokens = {
    accessToken: payload.accessToken,
    refreshToken: payload.refreshToken,
    expiresAt: payload.expiresAt ?? tokens.expiresAt,
  };
}

/** Money is a decimal string ("1234.50"): format it, never parse it into a float. */
export function formatMoney(amount: string, currency = "RUB"): string {
  const [whole = "0", fraction = ""] = amount.replace("-", "").split(".");
  const sign = amount.startsWith("-") ? "−" : "";
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, "\u00a0");
  return `${sign}${grouped},${fraction.padEnd(2, "0")}\u00a0${currency === "RUB" ? "₽" : currency}`;
}

export interface ContractSummary {
  number: string;
  balance: string;
  daysLeft: number | null;
  promiseDue: string | null;
  tariff: string;
  lastPayment: string | null;
}

export function summarise(contract: ContractCardFragment): ContractSummary {
  const { balance, tariff, payments } = contract;
  const last = payments.edges[0]?.node;
  return {
    number: contract.number,
    balance: formatMoney(balance.amount, balance.currency),
    daysLeft: balance.daysLeft ?? null,
    promiseDue: balance.openPromisedPayment?.dueAt ?? null,
    tariff: `${tariff.name}, ${tariff.speedMbps} Mbit/s, ${formatMoney(tariff.monthlyFee)}`,
    lastPayment: last ? `${formatMoney(last.amount)} ${last.status} ${last.createdAt}` : null,
  };
}

export async function overview(): Promise<AccountOverviewQuery["me"]> {
  const { data } = await client.query({ query: AccountOverviewDocument });
  return data.me; // null: signed out
}

type LedgerConnection = NonNullable<ContractLedgerQuery["contract"]>["ledger"];

/**
 * Every page of a contract's ledger: the first, then `fetchMore` with `after` until
 * `hasNextPage` is false. The cache appends each page (relayStylePagination on
 * Contract.ledger), so the watched query ends up holding them all, in order.
 */
export async function wholeLedger(
  number: string,
  filter: { kinds?: LedgerKind[]; from?: string; to?: string } = {},
): Promise<LedgerConnection | null> {
  const watched = client.watchQuery({
    query: ContractLedgerDocument,
    variables: { number, first: 20, ...filter },
  });
  let page = (await watched.result()).data.contract?.ledger;
  while (page?.pageInfo.hasNextPage && page.pageInfo.endCursor) {
    const more = await watched.fetchMore({ variables: { after: page.pageInfo.endCursor } });
    page = more.data.contract?.ledger; // this page only
  }
  return watched.getCurrentResult().data?.contract?.ledger ?? null; // every page
}

export async function topUp(
  contractNumber: string,
  amount: string,
  method: PaymentMethod = "BANK_CARD",
): Promise<string | null> {
  // 8 to 100 printable ASCII characters; keep it to retry the same top-up.
  const idempotencyKey = crypto.randomUUID();
  const { data } = await client.mutate({
    mutation: CreateTopUpDocument,
    variables: { input: { contractNumber, amount, method, idempotencyKey } },
  });
  const payload = data?.createTopUp;
  check(payload?.errors ?? []);
  return payload?.payment?.confirmationUrl ?? null; // where to send the subscriber
}

export async function takePromisedPayment(contractNumber: string, amount: string): Promise<void> {
  const { data } = await client.mutate({
    mutation: ActivatePromisedPaymentDocument,
    variables: { input: { contractNumber, amount } },
    // The payload carries the changed contract (with its balance's id): the cached
    // overview shows the new balance and the open promise without a refetch.
  });
  const payload = data?.activatePromisedPayment;
  check(payload?.errors ?? []);
  const promise = payload?.promisedPayment;
  if (promise) {
    console.info(`${formatMoney(promise.amount)} + ${formatMoney(promise.fee)}, due ${promise.dueAt}`);
  }
}

export async function connectTvPackage(contractNumber: string, packageId: string): Promise<string[]> {
  const { data } = await client.mutate({
    mutation: ConnectTvPackageDocument,
    variables: { input: { contractNumber, packageId } },
  });
  const payload = data?.connectTvPackage;
  check(payload?.errors ?? []);
  // `contract { id ... }`: Apollo has already updated the cached contract.
  return payload?.contract?.tvPackages.map((tvPackage) => tvPackage.name) ?? [];
}
