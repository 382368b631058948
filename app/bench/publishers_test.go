package bench

import "testing"

// TestSeenSetCountsEachOnce: out of order is new, a repeat is not.
func TestSeenSetCountsEachOnce(t *testing.T) {
	var s seenSet
	for _, seq := range []int64{5, 1, 200, 64, 63} {
		if !s.add(seq) {
			t.Fatalf("%d reported as seen before", seq)
		}
	}
	for _, seq := range []int64{5, 200, 64} {
		if s.add(seq) {
			t.Fatalf("%d, a repeat, reported as new", seq)
		}
	}
}
