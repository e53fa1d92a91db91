package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// Every uplink call that may wait on the network runs under a deadline here.
// uplink itself bounds only its dials and each message to a storage node (10
// minutes); a call to the satellite waits for its answer as long as the
// connection stays open, and a satellite (or a middlebox) that keeps a
// connection open but stops answering hangs the caller for good. A context
// cancelled at the deadline ends any of these calls: drpc abandons the stream
// and uplink returns the context's error.
//
// The deadline of a call is its floor plus the time its bytes need at the
// slowest rate that still counts as moving: a call that may wait for a whole
// segment upload gets that segment's time, so a slow transfer that keeps
// moving is never cut, while one on a dead connection ends in bounded time.

// limits are a project's deadlines; the zero value bounds nothing (uplink-c's
// behaviour, kept until syncd_project_set_limits is called).
type limits struct {
	floor   atomic.Int64 // nanoseconds every call may take; 0: unbounded
	minRate atomic.Int64 // bytes per second that count as moving; 0: no allowance per byte
}

// forBytes is the deadline of a call that may wait for n bytes to move; 0 means
// unbounded.
func (l *limits) forBytes(n int64) time.Duration {
	floor := time.Duration(l.floor.Load())
	if floor <= 0 {
		return 0
	}
	rate := l.minRate.Load()
	if rate <= 0 || n <= 0 {
		return floor
	}
	// Whole seconds per byte count first, then the remainder: no overflow for
	// any n a process can hold.
	perByte := time.Duration(n/rate)*time.Second + time.Duration(n%rate)*time.Second/time.Duration(rate)
	return floor + perByte
}

// timeoutError is what a call that hit its deadline returns (code
// SYNCD_ERROR_TIMEOUT); it wraps context.DeadlineExceeded.
type timeoutError struct {
	op    string
	after time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("%s: no answer from the Storj network within %s", e.op, e.after.Round(time.Millisecond))
}

func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// callWithin runs fn with a context derived from parent that expires after d
// (0: no deadline). When it expired, whatever fn returned is reported as a
// timeout of op: uplink wraps a cancelled context in errors of its own.
func callWithin(parent context.Context, op string, d time.Duration, fn func(ctx context.Context) error) error {
	if d <= 0 {
		return fn(parent)
	}
	ctx, cancel := context.WithTimeout(parent, d)
	defer cancel()
	err := fn(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && parent.Err() == nil {
		return &timeoutError{op: op, after: d}
	}
	return err
}

// watch runs fn, a call on a long-lived operation (an upload, a download, a
// listing) whose context is s's; when fn has not returned after d (0: never),
// s is cancelled, which ends fn and the operation with it. Reports whether
// that happened.
func (s scope) watch(d time.Duration, fn func()) (expired bool) {
	if d <= 0 {
		fn()
		return false
	}
	var fired atomic.Bool
	timer := time.AfterFunc(d, func() {
		fired.Store(true)
		s.cancel()
	})
	fn()
	// Stop may lose the race with a timer that fires just as fn returns: then
	// the operation is cancelled and counted as timed out, which is what its
	// next call would find anyway.
	timer.Stop()
	return fired.Load()
}
