package main

import (
	"math"
	"os"
	"runtime/debug"
	"sync"
)

// The Go heap of a syncd process is mostly the segment buffers of its uploads
// in flight (up to 64 MiB each) plus a little for listings and connections.
// Rather than collect more often at all times (a low GOGC, which costs CPU on
// every small upload), the runtime gets a soft memory limit that follows the
// uploads in flight: headroom plus the segments they may buffer. Below it the
// collector paces itself as usual; near it, it collects before the heap grows
// past the segments in use (e.g. a spent segment's buffer and the next one's).
const (
	// uplink's buffer for one encrypted segment (buffer.standardMaxEncryptedSegmentSize).
	segmentBufferBytes = 67254016
	// What the process' Go side needs besides segment buffers: listings, TLS
	// connections to the nodes, erasure-coding stripes.
	memoryHeadroomBytes = 24 << 20
)

var uploadMemory = struct {
	sync.Mutex
	reserved int64
	// disabled when the environment sets GOMEMLIMIT: the admin's limit stands.
	disabled bool
}{disabled: os.Getenv("GOMEMLIMIT") != ""}

// reserveUploadMemory raises the soft limit by what one upload of a project
// with the given segments in flight may buffer; the returned func gives it
// back (once, however often it is called).
func reserveUploadMemory(segmentsInFlight int) func() {
	if segmentsInFlight <= 0 {
		return func() {}
	}
	n := int64(segmentsInFlight) * segmentBufferBytes
	adjustUploadMemory(n)
	var once sync.Once
	return func() { once.Do(func() { adjustUploadMemory(-n) }) }
}

func adjustUploadMemory(delta int64) {
	uploadMemory.Lock()
	defer uploadMemory.Unlock()
	if uploadMemory.disabled {
		return
	}
	uploadMemory.reserved += delta
	if uploadMemory.reserved <= 0 {
		uploadMemory.reserved = 0
		debug.SetMemoryLimit(math.MaxInt64) // no upload in flight: no limit (Go's default)
		return
	}
	debug.SetMemoryLimit(memoryHeadroomBytes + uploadMemory.reserved)
}
