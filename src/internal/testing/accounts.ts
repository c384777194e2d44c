/** Who the Hub emulator knows: its one user, the org the user belongs to, and the token's identity. */
import { hex } from "./util.js"

export const ORG = "acme"

export interface Accounts {
  readonly user: string
  readonly userId: string
  readonly orgId: string
  readonly createdAt: Date
}

export const makeAccounts = (user: string): Accounts => ({
  user,
  userId: hex(12),
  orgId: hex(12),
  createdAt: new Date()
})

/** `GET /api/whoami-v2`. */
export const whoami = (accounts: Accounts) => {
  const { user } = accounts
  return {
    type: "user",
    id: accounts.userId,
    name: user,
    fullname: `${user.charAt(0).toUpperCase()}${user.slice(1)} Example`,
    email: `${user}@example.com`,
    emailVerified: true,
    canPay: false,
    isPro: false,
    periodEnd: null,
    avatarUrl: `/avatars/${user}.svg`,
    orgs: [
      {
        type: "org",
        name: ORG,
        id: accounts.orgId,
        fullname: "Acme",
        email: null,
        canPay: false,
        isEnterprise: false,
        roleInOrg: "write",
        avatarUrl: `/avatars/${ORG}.svg`
      }
    ],
    auth: {
      type: "access_token",
      accessToken: { displayName: "emulator", role: "write", createdAt: accounts.createdAt.toISOString() }
    }
  }
}

/** The owner of a namespace's jobs. */
export const owner = (accounts: Accounts, namespace: string) =>
  namespace === ORG
    ? { id: accounts.orgId, name: ORG, type: "org" }
    : { id: accounts.userId, name: accounts.user, type: "user" }
