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
	if s.upTo != 1 {
		t.Fatalf("upTo %d with 1 and 5 seen but not 2, want 1", s.upTo)
	}
	for _, seq := range []int64{3, 2, 4} {
		s.add(seq)
	}
	if s.upTo != 5 {
		t.Fatalf("upTo %d with 1..5 seen, want 5", s.upTo)
	}
}
