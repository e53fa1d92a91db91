package main

// #include "uplink_definitions.h"
import "C"

import (
	"context"
	"sync"
	"unsafe"
)

// handles maps the integers that C holds to live Go values. Zero is never a
// valid handle, so a zeroed C struct is always detected as invalid.
var handles = struct {
	sync.Mutex
	next  C.size_t
	items map[C.size_t]any
}{items: map[C.size_t]any{}}

func addHandle(v any) C.size_t {
	handles.Lock()
	defer handles.Unlock()
	handles.next++
	handles.items[handles.next] = v
	return handles.next
}

func getHandle(h C.size_t) any {
	handles.Lock()
	defer handles.Unlock()
	return handles.items[h]
}

func delHandle(h C.size_t) {
	handles.Lock()
	defer handles.Unlock()
	delete(handles.items, h)
}

// scope is the lifetime of a project, an upload or a download: cancelling a
// project cancels what was started from it.
type scope struct {
	ctx    context.Context
	cancel context.CancelFunc
}

func rootScope() scope {
	ctx, cancel := context.WithCancel(context.Background())
	return scope{ctx, cancel}
}

func (s scope) child() scope {
	ctx, cancel := context.WithCancel(s.ctx)
	return scope{ctx, cancel}
}

// calloc returns zeroed C memory; it never returns nil (Go's cgo aborts on OOM).
func calloc(n, size C.size_t) unsafe.Pointer {
	return C.calloc(n, size)
}

func cfree(p unsafe.Pointer) {
	if p != nil {
		C.free(p)
	}
}
