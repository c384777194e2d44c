/** How long ago an ISO time was, for listings: `12s ago`, `3m ago`, `2h ago`, `1d ago`. */
export const ago = (iso: string | undefined) => {
  if (iso === undefined) return "-"
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000))
  if (Number.isNaN(seconds)) return iso
  if (seconds < 60) return `${seconds}s ago`
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`
  if (seconds < 86400) return `${Math.floor(seconds / 3600)}h ago`
  return `${Math.floor(seconds / 86400)}d ago`
}
