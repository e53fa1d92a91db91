package main

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

func TestForBytes(t *testing.T) {
	var l limits
	if d := l.forBytes(1 << 30); d != 0 {
		t.Fatalf("unset limits bound calls: %v", d)
	}
	l.floor.Store(int64(60 * time.Second))
	if d := l.forBytes(1 << 30); d != 60*time.Second {
		t.Fatalf("without a rate only the floor counts: %v", d)
	}
	l.minRate.Store(32 << 10)
	cases := []struct {
		bytes int64
		want  time.Duration
	}{
		{0, 60 * time.Second},
		{32 << 10, 61 * time.Second},
		{48 << 10, 61*time.Second + 500*time.Millisecond},
		{128 << 20, 60*time.Second + 4096*time.Second}, // two 64 MiB segments at 32 KiB/s
	}
	for _, c := range cases {
		if got := l.forBytes(c.bytes); got != c.want {
			t.Errorf("forBytes(%d) = %v, want %v", c.bytes, got, c.want)
		}
	}
	l.minRate.Store(1)
	if got := l.forBytes(math.MaxInt64 / 2); got <= 0 {
		t.Errorf("a huge byte count overflowed: %v", got)
	}
}

func TestCallWithinReportsATimeout(t *testing.T) {
	err := callWithin(context.Background(), "stat object", 10*time.Millisecond, func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("uplink's own wrapping of a cancelled context")
	})
	var timeout *timeoutError
	if !errors.As(err, &timeout) || !errors.Is(err, context.DeadlineExceeded) || timeout.op != "stat object" {
		t.Fatalf("got %v", err)
	}
	if err := callWithin(context.Background(), "x", time.Second, func(context.Context) error { return nil }); err != nil {
		t.Fatalf("a call in time failed: %v", err)
	}
}

func TestWatchCancelsTheScopeOfALateCall(t *testing.T) {
	s := rootScope()
	if s.watch(time.Second, func() {}) || s.ctx.Err() != nil {
		t.Fatal("a call in time was cancelled")
	}
	if !s.watch(10*time.Millisecond, func() { <-s.ctx.Done() }) {
		t.Fatal("a late call was not reported")
	}
}
