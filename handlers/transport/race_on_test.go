//go:build race

package transport

// raceOn: the race detector drops a share of what is put in a sync.Pool at random,
// so allocation counts of pooled paths mean nothing under it.
const raceOn = true
