package idempotency

import (
	"context"
	"testing"
	"time"
)

func TestMemoryForgetsAfterTheWindowAndClaimsLapse(t *testing.T) {
	m := NewMemory(time.Minute, 100)
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	ctx := context.Background()
	_, c, _ := m.Claim(ctx, "saved")
	_ = m.Save(ctx, c, Result{Status: 202})
	_, _, _ = m.Claim(ctx, "abandoned") // its request died without Save or Release

	now = now.Add(ClaimTTL + time.Second)
	if _, c, _ := m.Claim(ctx, "abandoned"); c == nil {
		t.Error("an abandoned claim still holds its key after ClaimTTL")
	}
	if res, _, _ := m.Claim(ctx, "saved"); res == nil {
		t.Error("a result was forgotten within its window")
	}
	now = now.Add(time.Minute)
	if res, c, _ := m.Claim(ctx, "saved"); res != nil || c == nil {
		t.Error("a result outlived its window")
	}
}
