/**
 * Where a pool's leases go: the hosts in the order they were decided on, each with its reserved slots.
 * A lease reserves a slot on the first host that answers and has room, else on one still booting,
 * else on a new host (booted for it) while the pool may have more; reservations count a booting host's
 * slots, so a burst of N leases boots only ceil(N / capacity) hosts (HF's boot lock). Every decision is
 * taken under one lock, and is quick: no request is made under it.
 */
import * as Effect from "effect/Effect"
import type * as Host from "./host.js"

/** The pool's hosts and what it decided. */
export interface Slots {
  /** Live hosts (booting or ready), in the order they were decided on. */
  readonly hosts: Array<Host.Host>
  /** The number the next host gets. */
  next: number
  /** Set once the pool's scope closes: nothing more is booted or replaced. */
  closing: boolean
}

export const empty = (): Slots => ({ hosts: [], next: 1, closing: false })

/** Whether a lease can go on the host. */
const hasRoom = (host: Host.Host) => host.status !== "dead" && !host.full && host.reserved < host.capacity

/**
 * A slot reserved on a host. `free` gives it back once: freeing it again does nothing, so no path of a
 * lease (a failed step, its release, a host found full) can free another lease's slot.
 */
export interface Slot {
  readonly host: Host.Host
  readonly free: Effect.Effect<void>
}

/** Reserves a slot on `host` (room is the caller's to check). */
export const take = (host: Host.Host): Slot => {
  let held = true
  host.reserved += 1
  return {
    host,
    free: Effect.sync(() => {
      if (!held) return
      held = false
      host.reserved -= 1
    })
  }
}

/**
 * A slot on the host a lease goes on: a ready one first (hosts fill before new ones boot), then one still
 * booting; `undefined` when none has room.
 */
export const reserveExisting = (slots: Slots): Slot | undefined => {
  const host =
    slots.hosts.find((h) => h.status === "ready" && hasRoom(h)) ??
    slots.hosts.find((h) => h.status === "booting" && hasRoom(h))
  return host === undefined ? undefined : take(host)
}

/** Whether the pool may boot another host. */
export const mayBoot = (slots: Slots, maxHosts: number | undefined) =>
  !slots.closing && (maxHosts === undefined || slots.hosts.length < maxHosts)

/** Drops a host from the live ones (it ended or never started); false when it was already dropped. */
export const drop = (slots: Slots, host: Host.Host): boolean => {
  const at = slots.hosts.indexOf(host)
  host.status = "dead"
  if (at < 0) return false
  slots.hosts.splice(at, 1)
  return true
}
