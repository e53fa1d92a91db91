package main

// #include "uplink_definitions.h"
import "C"

import (
	"context"
	"time"
	"unsafe"

	"storj.io/uplink"
	"storj.io/uplink/private/testuplink"
)

type project struct {
	scope
	*uplink.Project
	// segmentsInFlight bounds what one upload buffers (0: uplink's default, unbounded here).
	segmentsInFlight int
	// limits are the deadlines of the project's calls (see deadline.go).
	limits *limits
}

// call runs one request to the satellite under the project's deadline.
func (p *project) call(op string, fn func(ctx context.Context) error) error {
	return callWithin(p.ctx, op, p.limits.forBytes(0), fn)
}

func lookupProject(c *C.UplinkProject) (*project, error) {
	if c == nil {
		return nil, errNull
	}
	p, ok := getHandle(c._handle).(*project)
	if !ok {
		return nil, errInvalidHandle
	}
	return p, nil
}

//export uplink_config_open_project
func uplink_config_open_project(config C.UplinkConfig, c *C.UplinkAccess) C.UplinkProjectResult {
	return openProject(config, c, 0)
}

// syncd_config_open_project is a syncd extension (not in uplink-c): an
// uplink_config_open_project whose uploads keep at most segmentsInFlight
// segments (up to 64 MiB each) in memory at once; 0 keeps uplink's default
// (10), which buffers several segments of a large file while they upload.
//
//export syncd_config_open_project
func syncd_config_open_project(config C.UplinkConfig, c *C.UplinkAccess, segmentsInFlight C.int32_t) C.UplinkProjectResult {
	return openProject(config, c, int(segmentsInFlight))
}

func openProject(config C.UplinkConfig, c *C.UplinkAccess, segmentsInFlight int) C.UplinkProjectResult {
	access, err := lookupAccess(c)
	if err != nil {
		return C.UplinkProjectResult{error: mallocError(err)}
	}
	cfg := uplink.Config{
		DialTimeout: time.Duration(config.dial_timeout_milliseconds) * time.Millisecond,
	}
	if config.user_agent != nil {
		cfg.UserAgent = C.GoString(config.user_agent)
	}
	s := rootScope()
	ctx := s.ctx
	if segmentsInFlight > 0 {
		// uplink reads its segment scheduler from the context it opens the project with.
		tuned := testuplink.DefaultConcurrentSegmentUploadsConfig()
		tuned.SchedulerOptions.MaximumConcurrentHandles = segmentsInFlight
		ctx = testuplink.WithConcurrentSegmentUploadsConfig(ctx, tuned)
	}
	p, err := cfg.OpenProject(ctx, access)
	if err != nil {
		s.cancel()
		return C.UplinkProjectResult{error: mallocError(err)}
	}
	cp := (*C.UplinkProject)(calloc(1, C.sizeof_UplinkProject))
	cp._handle = addHandle(&project{s, p, segmentsInFlight, &limits{}})
	return C.UplinkProjectResult{project: cp}
}

// syncd_project_set_limits is a syncd extension (not in uplink-c): from then
// on, a call on the project (or on an upload, download or listing started from
// it) that may wait on the network ends with SYNCD_ERROR_TIMEOUT when it has
// not returned within timeoutMilliseconds, plus, for a call that moves data,
// the time its bytes need at minBytesPerSecond. A timed-out upload, download or
// listing is cancelled: its later calls fail too. timeoutMilliseconds <= 0
// leaves calls unbounded, as uplink-c does.
//
//export syncd_project_set_limits
func syncd_project_set_limits(c *C.UplinkProject, timeoutMilliseconds, minBytesPerSecond C.int64_t) *C.UplinkError {
	p, err := lookupProject(c)
	if err != nil {
		return mallocError(err)
	}
	p.limits.floor.Store(int64(timeoutMilliseconds) * int64(time.Millisecond))
	p.limits.minRate.Store(int64(minBytesPerSecond))
	return nil
}

//export uplink_close_project
func uplink_close_project(c *C.UplinkProject) *C.UplinkError {
	p, err := lookupProject(c)
	if err != nil {
		return mallocError(err)
	}
	defer p.cancel()
	// The handle stays until uplink_free_project_result, as in uplink-c;
	// a closed project only fails its later calls.
	return mallocError(p.Close())
}

//export uplink_free_project_result
func uplink_free_project_result(result C.UplinkProjectResult) {
	uplink_free_error(result.error)
	if result.project != nil {
		if p, ok := getHandle(result.project._handle).(*project); ok {
			p.cancel()
		}
		delHandle(result.project._handle)
		cfree(unsafe.Pointer(result.project))
	}
}

func bucketResult(b *uplink.Bucket, err error) C.UplinkBucketResult {
	if err != nil {
		return C.UplinkBucketResult{error: mallocError(err)}
	}
	cb := (*C.UplinkBucket)(calloc(1, C.sizeof_UplinkBucket))
	cb.name = C.CString(b.Name)
	cb.created = C.int64_t(b.Created.Unix())
	return C.UplinkBucketResult{bucket: cb}
}

//export uplink_stat_bucket
func uplink_stat_bucket(c *C.UplinkProject, bucket *C.char) C.UplinkBucketResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil {
		return C.UplinkBucketResult{error: mallocError(firstErr(err, errNull))}
	}
	var b *uplink.Bucket
	err = p.call("stat bucket", func(ctx context.Context) (err error) {
		b, err = p.StatBucket(ctx, C.GoString(bucket))
		return err
	})
	return bucketResult(b, err)
}

//export uplink_ensure_bucket
func uplink_ensure_bucket(c *C.UplinkProject, bucket *C.char) C.UplinkBucketResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil {
		return C.UplinkBucketResult{error: mallocError(firstErr(err, errNull))}
	}
	var b *uplink.Bucket
	err = p.call("ensure bucket", func(ctx context.Context) (err error) {
		b, err = p.EnsureBucket(ctx, C.GoString(bucket))
		return err
	})
	return bucketResult(b, err)
}

//export uplink_free_bucket_result
func uplink_free_bucket_result(result C.UplinkBucketResult) {
	uplink_free_error(result.error)
	if result.bucket != nil {
		cfree(unsafe.Pointer(result.bucket.name))
		cfree(unsafe.Pointer(result.bucket))
	}
}

//export uplink_stat_object
func uplink_stat_object(c *C.UplinkProject, bucket, key *C.char) C.UplinkObjectResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil || key == nil {
		return C.UplinkObjectResult{error: mallocError(firstErr(err, errNull))}
	}
	var obj *uplink.Object
	err = p.call("stat object", func(ctx context.Context) (err error) {
		obj, err = p.StatObject(ctx, C.GoString(bucket), C.GoString(key))
		return err
	})
	return objectResult(obj, err)
}

//export uplink_delete_object
func uplink_delete_object(c *C.UplinkProject, bucket, key *C.char) C.UplinkObjectResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil || key == nil {
		return C.UplinkObjectResult{error: mallocError(firstErr(err, errNull))}
	}
	var obj *uplink.Object
	err = p.call("delete object", func(ctx context.Context) (err error) {
		obj, err = p.DeleteObject(ctx, C.GoString(bucket), C.GoString(key))
		return err
	})
	return objectResult(obj, err)
}

//export uplink_move_object
func uplink_move_object(c *C.UplinkProject, oldBucket, oldKey, newBucket, newKey *C.char,
	_ *C.UplinkMoveObjectOptions) *C.UplinkError {
	p, err := lookupProject(c)
	if err != nil {
		return mallocError(err)
	}
	if oldBucket == nil || oldKey == nil || newBucket == nil || newKey == nil {
		return mallocError(errNull)
	}
	return mallocError(p.call("move object", func(ctx context.Context) error {
		return p.MoveObject(ctx, C.GoString(oldBucket), C.GoString(oldKey), C.GoString(newBucket), C.GoString(newKey), nil)
	}))
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

//export uplink_copy_object
func uplink_copy_object(c *C.UplinkProject, oldBucket, oldKey, newBucket, newKey *C.char,
	_ *C.UplinkCopyObjectOptions) C.UplinkObjectResult {
	p, err := lookupProject(c)
	if err != nil || oldBucket == nil || oldKey == nil || newBucket == nil || newKey == nil {
		return C.UplinkObjectResult{error: mallocError(firstErr(err, errNull))}
	}
	var obj *uplink.Object
	err = p.call("copy object", func(ctx context.Context) (err error) {
		obj, err = p.CopyObject(ctx, C.GoString(oldBucket), C.GoString(oldKey), C.GoString(newBucket), C.GoString(newKey), nil)
		return err
	})
	return objectResult(obj, err)
}
