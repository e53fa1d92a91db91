package main

import (
	"math"
	"os"
	"runtime/debug"
	"sync"
)

// The Go heap of a syncd process is mostly the segment buffers of its uploads
// in flight (up to 64 MiB each, filled in 1 MiB chunks as data is written)
// and the part buffers of its downloads read ahead (ahead.go), plus a little
// for listings and connections. Rather than collect more often
// at all times (a low GOGC, which costs CPU on every small upload), the
// runtime gets a soft memory limit that follows what the uploads in flight
// have buffered: headroom plus each upload's written bytes, in whole chunks,
// up to the segments it may hold. Below the limit the collector paces itself
// as usual; near it, it collects before the heap grows past the buffers in
// use (e.g. a spent segment's chunks and the next segment's).
const (
	// uplink's buffer for one encrypted segment (buffer.standardMaxEncryptedSegmentSize).
	segmentBufferBytes = 67254016
	// the unit in which uplink's segment buffers grow (buffer.chunkSize).
	bufferChunkBytes = 1 << 20
	// What the process' Go side needs besides segment buffers: listings, TLS
	// connections to the nodes, erasure-coding stripes.
	memoryHeadroomBytes = 24 << 20
)

var transferMemory = struct {
	sync.Mutex
	reserved int64
	// disabled when the environment sets GOMEMLIMIT: the admin's limit stands.
	disabled bool
}{disabled: os.Getenv("GOMEMLIMIT") != ""}

// memoryBudget is one upload's or download's share of the soft limit; nil for
// an upload when the project does not bound its segments in flight, and for a
// plain download (nothing is reserved then).
type memoryBudget struct {
	most     int64 // the most it may reserve (an upload: segments in flight × segment buffer)
	reserved int64
	released bool
}

func newUploadBudget(segmentsInFlight int) *memoryBudget {
	if segmentsInFlight <= 0 {
		return nil
	}
	return &memoryBudget{most: int64(segmentsInFlight) * segmentBufferBytes}
}

// reserveMemory is the budget of a download's read-ahead buffers, reserved whole at once.
func reserveMemory(n int64) *memoryBudget {
	b := &memoryBudget{most: n}
	b.grow(n)
	return b
}

// grow reserves what written bytes may occupy in the segment buffers.
func (b *memoryBudget) grow(written int64) {
	if b == nil {
		return
	}
	want := min((written+bufferChunkBytes-1)/bufferChunkBytes*bufferChunkBytes, b.most)
	transferMemory.Lock()
	defer transferMemory.Unlock()
	if b.released || want <= b.reserved {
		return
	}
	transferMemory.reserved += want - b.reserved
	b.reserved = want
	applyMemoryLimit()
}

// release gives the upload's share back (once, however often it is called).
func (b *memoryBudget) release() {
	if b == nil {
		return
	}
	transferMemory.Lock()
	defer transferMemory.Unlock()
	if b.released {
		return
	}
	b.released = true
	transferMemory.reserved -= b.reserved
	b.reserved = 0
	applyMemoryLimit()
}

// applyMemoryLimit sets the runtime's soft limit; transferMemory is locked.
func applyMemoryLimit() {
	if transferMemory.disabled {
		return
	}
	if transferMemory.reserved <= 0 {
		transferMemory.reserved = 0
		debug.SetMemoryLimit(math.MaxInt64) // no upload buffers anything: no limit (Go's default)
		return
	}
	debug.SetMemoryLimit(memoryHeadroomBytes + transferMemory.reserved)
}
