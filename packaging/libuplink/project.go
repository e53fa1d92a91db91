package main

// #include "uplink_definitions.h"
import "C"

import (
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
	cp._handle = addHandle(&project{s, p, segmentsInFlight})
	return C.UplinkProjectResult{project: cp}
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
	return bucketResult(p.StatBucket(p.ctx, C.GoString(bucket)))
}

//export uplink_ensure_bucket
func uplink_ensure_bucket(c *C.UplinkProject, bucket *C.char) C.UplinkBucketResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil {
		return C.UplinkBucketResult{error: mallocError(firstErr(err, errNull))}
	}
	return bucketResult(p.EnsureBucket(p.ctx, C.GoString(bucket)))
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
	return objectResult(p.StatObject(p.ctx, C.GoString(bucket), C.GoString(key)))
}

//export uplink_delete_object
func uplink_delete_object(c *C.UplinkProject, bucket, key *C.char) C.UplinkObjectResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil || key == nil {
		return C.UplinkObjectResult{error: mallocError(firstErr(err, errNull))}
	}
	return objectResult(p.DeleteObject(p.ctx, C.GoString(bucket), C.GoString(key)))
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
	return mallocError(p.MoveObject(p.ctx, C.GoString(oldBucket), C.GoString(oldKey),
		C.GoString(newBucket), C.GoString(newKey), nil))
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
	return objectResult(p.CopyObject(p.ctx, C.GoString(oldBucket), C.GoString(oldKey),
		C.GoString(newBucket), C.GoString(newKey), nil))
}
