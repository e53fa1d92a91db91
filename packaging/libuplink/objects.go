package main

// #include "uplink_definitions.h"
import "C"

import (
	"time"
	"unsafe"

	"storj.io/uplink"
)

func unixOrZero(t time.Time) C.int64_t {
	if t.IsZero() {
		return 0
	}
	return C.int64_t(t.Unix())
}

// objectToC deep-copies obj into C memory (released by uplink_free_object).
func objectToC(obj *uplink.Object) *C.UplinkObject {
	if obj == nil {
		return nil
	}
	c := (*C.UplinkObject)(calloc(1, C.sizeof_UplinkObject))
	c.key = C.CString(obj.Key)
	c.is_prefix = C.bool(obj.IsPrefix)
	c.system.created = unixOrZero(obj.System.Created)
	c.system.expires = unixOrZero(obj.System.Expires)
	c.system.content_length = C.int64_t(obj.System.ContentLength)
	c.custom = customToC(obj.Custom)
	return c
}

func customToC(custom uplink.CustomMetadata) C.UplinkCustomMetadata {
	if len(custom) == 0 {
		return C.UplinkCustomMetadata{}
	}
	entries := (*C.UplinkCustomMetadataEntry)(calloc(C.size_t(len(custom)), C.sizeof_UplinkCustomMetadataEntry))
	slice := unsafe.Slice(entries, len(custom))
	i := 0
	for k, v := range custom {
		// CBytes, not CString: keys and values may hold any bytes, the
		// lengths carry the size (CBytes of an empty slice still allocates).
		slice[i] = C.UplinkCustomMetadataEntry{
			key:          (*C.char)(C.CBytes([]byte(k))),
			key_length:   C.size_t(len(k)),
			value:        (*C.char)(C.CBytes([]byte(v))),
			value_length: C.size_t(len(v)),
		}
		i++
	}
	return C.UplinkCustomMetadata{entries: entries, count: C.size_t(len(custom))}
}

func customFromC(c C.UplinkCustomMetadata) uplink.CustomMetadata {
	custom := uplink.CustomMetadata{}
	if c.count == 0 || c.entries == nil {
		return custom
	}
	for _, e := range unsafe.Slice(c.entries, int(c.count)) {
		custom[C.GoStringN(e.key, C.int(e.key_length))] = C.GoStringN(e.value, C.int(e.value_length))
	}
	return custom
}

func objectResult(obj *uplink.Object, err error) C.UplinkObjectResult {
	if err != nil {
		return C.UplinkObjectResult{error: mallocError(err)}
	}
	return C.UplinkObjectResult{object: objectToC(obj)}
}

//export uplink_free_object
func uplink_free_object(obj *C.UplinkObject) {
	if obj == nil {
		return
	}
	cfree(unsafe.Pointer(obj.key))
	if obj.custom.entries != nil {
		for _, e := range unsafe.Slice(obj.custom.entries, int(obj.custom.count)) {
			cfree(unsafe.Pointer(e.key))
			cfree(unsafe.Pointer(e.value))
		}
		cfree(unsafe.Pointer(obj.custom.entries))
	}
	cfree(unsafe.Pointer(obj))
}

//export uplink_free_object_result
func uplink_free_object_result(result C.UplinkObjectResult) {
	uplink_free_error(result.error)
	uplink_free_object(result.object)
}

type objectIterator struct {
	scope  // the listing's: cancelled when a page does not come in time
	it     *uplink.ObjectIterator
	limits *limits
	// timedOut is the deadline a Next missed (then the listing is over).
	timedOut time.Duration
}

//export uplink_list_objects
func uplink_list_objects(c *C.UplinkProject, bucket *C.char, options *C.UplinkListObjectsOptions) *C.UplinkObjectIterator {
	// Errors (bad handle, NULL bucket) surface through
	// uplink_object_iterator_err, as in uplink-c.
	var it *objectIterator
	p, err := lookupProject(c)
	if err == nil && bucket != nil {
		opts := &uplink.ListObjectsOptions{}
		if options != nil {
			if options.prefix != nil {
				opts.Prefix = C.GoString(options.prefix)
			}
			if options.cursor != nil {
				opts.Cursor = C.GoString(options.cursor)
			}
			opts.Recursive = bool(options.recursive)
			opts.System = bool(options.system)
			opts.Custom = bool(options.custom)
		}
		// Pages are fetched by Next with the context given here: the listing's
		// own scope, which Next cancels when a page is late.
		s := p.child()
		it = &objectIterator{scope: s, it: p.ListObjects(s.ctx, C.GoString(bucket), opts), limits: p.limits}
	} else if err == nil {
		err = errNull
	}
	ci := (*C.UplinkObjectIterator)(calloc(1, C.sizeof_UplinkObjectIterator))
	if err != nil {
		ci._handle = addHandle(err)
	} else {
		ci._handle = addHandle(it)
	}
	return ci
}

//export uplink_object_iterator_next
func uplink_object_iterator_next(ci *C.UplinkObjectIterator) C.bool {
	if ci == nil {
		return false
	}
	it, ok := getHandle(ci._handle).(*objectIterator)
	if !ok {
		return false
	}
	if it.timedOut > 0 {
		return false
	}
	// A Next that fetches a page is one satellite request.
	d := it.limits.forBytes(0)
	var more bool
	if it.watch(d, func() { more = it.it.Next() }) {
		it.timedOut = d
		return false
	}
	return C.bool(more)
}

//export uplink_object_iterator_item
func uplink_object_iterator_item(ci *C.UplinkObjectIterator) *C.UplinkObject {
	if ci == nil {
		return nil
	}
	it, ok := getHandle(ci._handle).(*objectIterator)
	if !ok {
		return nil
	}
	// A copy the caller frees with uplink_free_object, as in uplink-c.
	return objectToC(it.it.Item())
}

//export uplink_object_iterator_err
func uplink_object_iterator_err(ci *C.UplinkObjectIterator) *C.UplinkError {
	if ci == nil {
		return mallocError(errNull)
	}
	switch v := getHandle(ci._handle).(type) {
	case *objectIterator:
		if v.timedOut > 0 {
			return mallocError(&timeoutError{op: "list objects", after: v.timedOut})
		}
		return mallocError(v.it.Err())
	case error:
		return mallocError(v)
	default:
		return mallocError(errInvalidHandle)
	}
}

//export uplink_free_object_iterator
func uplink_free_object_iterator(ci *C.UplinkObjectIterator) {
	if ci == nil {
		return
	}
	if it, ok := getHandle(ci._handle).(*objectIterator); ok {
		it.cancel()
	}
	delHandle(ci._handle)
	cfree(unsafe.Pointer(ci))
}
