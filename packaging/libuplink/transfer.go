package main

// #include "uplink_definitions.h"
import "C"

import (
	"context"
	"time"
	"unsafe"

	"storj.io/uplink"
	"storj.io/uplink/private/object"
)

// maxEmptyReads bounds the retries of a Read that returned neither data nor error.
const maxEmptyReads = 1000

// defaultSegmentsInFlight is how many segments of one upload uplink keeps in
// flight when the project does not bound them (its scheduler's default).
const defaultSegmentsInFlight = 10

// objectUpload is what both a plain upload (*uplink.Upload) and a
// conditional one (*object.VersionedUpload) offer.
type objectUpload interface {
	Write(p []byte) (int, error)
	SetCustomMetadata(ctx context.Context, custom uplink.CustomMetadata) error
	Commit() error
	Abort() error
}

type upload struct {
	scope
	objectUpload
	info func() *uplink.Object
	// budget is this upload's share of the soft memory limit (see memory.go).
	budget  *memoryBudget
	written int64
	limits  *limits
	// inFlightMost is the most data a Write may wait to see sent (the segments
	// in flight: a Write blocks until one of them is done); a Commit also waits
	// for the segment being filled.
	inFlightMost int64
	// timedOut is the deadline a call missed (then the upload is cancelled).
	timedOut time.Duration
}

// bounded runs fn, a call that may wait until the upload's unsent bytes have
// moved, under its deadline; a missed deadline cancels the upload and becomes
// the call's error.
func (u *upload) bounded(op string, fn func() error) error {
	if u.timedOut > 0 {
		return &timeoutError{op: op, after: u.timedOut}
	}
	var err error
	d := u.limits.forBytes(min(u.written, u.inFlightMost))
	if u.watch(d, func() { err = fn() }) {
		u.timedOut = d
		return &timeoutError{op: op, after: d}
	}
	return err
}

// settle runs fn, Commit or Abort, under the upload's deadline. Both wait for the
// upload's goroutines, and after a cancellation those delete the unfinished
// object on the satellite with a context that cannot be cancelled
// (streamupload.deleteCancelledObject): with a satellite that stopped answering
// they would not return for as long as its connection stays open. So past the
// deadline the caller gets its timeout at once and fn ends in the background,
// touching only Go memory. An upload that has already timed out is not waited
// for again.
func (u *upload) settle(op string, fn func() error) error {
	if u.timedOut > 0 {
		go func() { _ = fn() }()
		return &timeoutError{op: op, after: u.timedOut}
	}
	d := u.limits.forBytes(min(u.written, u.inFlightMost+segmentBufferBytes))
	if d <= 0 {
		return fn()
	}
	done := make(chan error, 1)
	go func() { done <- fn() }()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		u.cancel()
		u.timedOut = d
		return &timeoutError{op: op, after: d}
	}
}

// objectReader is what a download reads from: one uplink download, or an
// aheadReader that fetches several parts of the object at once.
type objectReader interface {
	Read(p []byte) (int, error)
	Close() error
}

type download struct {
	scope
	reader objectReader
	object *uplink.Object
	limits *limits
	// streams is how many parts move at once (1: a plain download); a read's
	// deadline allows for its bytes sharing the connection with the others.
	streams  int64
	timedOut time.Duration
	// failed is an error met after a read had already filled part of its buffer:
	// the bytes are returned first, the error by every later read.
	failed error
	// budget is the read-ahead buffers' share of the soft memory limit (memory.go).
	budget *memoryBudget
}

//export uplink_upload_object
func uplink_upload_object(c *C.UplinkProject, bucket, key *C.char, options *C.UplinkUploadOptions) C.UplinkUploadResult {
	return startUpload(c, bucket, key, options, false)
}

// syncd_upload_object_if_absent is a syncd extension (not in uplink-c): an
// upload whose commit fails with SYNCD_ERROR_FAILED_PRECONDITION when the key
// already exists (If-None-Match: *), checked atomically by the satellite.
//
//export syncd_upload_object_if_absent
func syncd_upload_object_if_absent(c *C.UplinkProject, bucket, key *C.char, options *C.UplinkUploadOptions) C.UplinkUploadResult {
	return startUpload(c, bucket, key, options, true)
}

func startUpload(c *C.UplinkProject, bucket, key *C.char, options *C.UplinkUploadOptions, ifAbsent bool) C.UplinkUploadResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil || key == nil {
		return C.UplinkUploadResult{error: mallocError(firstErr(err, errNull))}
	}
	var expires time.Time
	if options != nil && options.expires > 0 {
		expires = time.Unix(int64(options.expires), 0)
	}
	s := p.child()
	segments := p.segmentsInFlight
	if segments <= 0 {
		segments = defaultSegmentsInFlight
	}
	u := &upload{scope: s, limits: p.limits, inFlightMost: int64(segments) * segmentBufferBytes}
	// The upload lives in s: starting it may ask the satellite, so the start is
	// bounded like any other call of the upload.
	err = u.bounded("start upload", func() error {
		if ifAbsent {
			opts := &object.UploadOptions{Expires: expires, IfNoneMatch: []string{"*"}}
			vu, err := object.UploadObject(s.ctx, p.Project, C.GoString(bucket), C.GoString(key), opts)
			if err != nil {
				return err
			}
			u.objectUpload = vu
			u.info = func() *uplink.Object {
				if v := vu.Info(); v != nil {
					return &v.Object
				}
				return nil
			}
			return nil
		}
		pu, err := p.UploadObject(s.ctx, C.GoString(bucket), C.GoString(key), &uplink.UploadOptions{Expires: expires})
		if err != nil {
			return err
		}
		u.objectUpload = pu
		u.info = pu.Info
		return nil
	})
	if err != nil {
		s.cancel()
		return C.UplinkUploadResult{error: mallocError(err)}
	}
	u.budget = newUploadBudget(p.segmentsInFlight)
	cu := (*C.UplinkUpload)(calloc(1, C.sizeof_UplinkUpload))
	cu._handle = addHandle(u)
	return C.UplinkUploadResult{upload: cu}
}

func lookupUpload(c *C.UplinkUpload) (*upload, error) {
	if c == nil {
		return nil, errNull
	}
	u, ok := getHandle(c._handle).(*upload)
	if !ok {
		return nil, errInvalidHandle
	}
	return u, nil
}

//export uplink_upload_write
func uplink_upload_write(c *C.UplinkUpload, data unsafe.Pointer, length C.size_t) C.UplinkWriteResult {
	u, err := lookupUpload(c)
	if err != nil {
		return C.UplinkWriteResult{error: mallocError(err)}
	}
	if length == 0 {
		return C.UplinkWriteResult{}
	}
	if data == nil {
		return C.UplinkWriteResult{error: mallocError(errNull)}
	}
	// The slice aliases the caller's buffer only for the duration of Write,
	// which may wait for a segment in flight to be sent before it takes more.
	var n int
	err = u.bounded("upload write", func() (err error) {
		n, err = u.Write(unsafe.Slice((*byte)(data), int(length)))
		return err
	})
	u.written += int64(n)
	u.budget.grow(u.written)
	return C.UplinkWriteResult{bytes_written: C.size_t(n), error: mallocError(err)}
}

//export uplink_upload_set_custom_metadata
func uplink_upload_set_custom_metadata(c *C.UplinkUpload, custom C.UplinkCustomMetadata) *C.UplinkError {
	u, err := lookupUpload(c)
	if err != nil {
		return mallocError(err)
	}
	return mallocError(u.SetCustomMetadata(u.ctx, customFromC(custom)))
}

//export uplink_upload_commit
func uplink_upload_commit(c *C.UplinkUpload) *C.UplinkError {
	u, err := lookupUpload(c)
	if err != nil {
		return mallocError(err)
	}
	defer u.budget.release()
	// Commit sends what is left and then asks the satellite to commit.
	return mallocError(u.settle("upload commit", u.Commit))
}

//export uplink_upload_abort
func uplink_upload_abort(c *C.UplinkUpload) *C.UplinkError {
	u, err := lookupUpload(c)
	if err != nil {
		return mallocError(err)
	}
	defer u.budget.release()
	if u.timedOut > 0 {
		// Cancelled already, so nothing can become visible: the clean-up goes on
		// in the background (see settle).
		go func() { _ = u.Abort() }()
		return nil
	}
	return mallocError(u.settle("upload abort", u.Abort))
}

//export uplink_upload_info
func uplink_upload_info(c *C.UplinkUpload) C.UplinkObjectResult {
	u, err := lookupUpload(c)
	if err != nil {
		return C.UplinkObjectResult{error: mallocError(err)}
	}
	return objectResult(u.info(), nil)
}

//export uplink_free_write_result
func uplink_free_write_result(result C.UplinkWriteResult) {
	uplink_free_error(result.error)
}

//export uplink_free_upload_result
func uplink_free_upload_result(result C.UplinkUploadResult) {
	uplink_free_error(result.error)
	if result.upload != nil {
		if u, ok := getHandle(result.upload._handle).(*upload); ok {
			// An upload neither committed nor aborted is abandoned here;
			// cancelling its context releases its connections.
			u.cancel()
			u.budget.release()
		}
		delHandle(result.upload._handle)
		cfree(unsafe.Pointer(result.upload))
	}
}

//export uplink_download_object
func uplink_download_object(c *C.UplinkProject, bucket, key *C.char, options *C.UplinkDownloadOptions) C.UplinkDownloadResult {
	return startDownload(c, bucket, key, options, 1, 0)
}

// syncd_download_object_ahead is a syncd extension (not in uplink-c): a download
// that fetches up to parts pieces of partBytes of the range at once, each over
// its own connections, and returns them in order (see ahead.go). It holds at
// most parts × partBytes in memory; parts <= 1 (or a range no longer than one
// part) is a plain uplink_download_object.
//
//export syncd_download_object_ahead
func syncd_download_object_ahead(c *C.UplinkProject, bucket, key *C.char, options *C.UplinkDownloadOptions, parts C.int32_t, partBytes C.int64_t) C.UplinkDownloadResult {
	return startDownload(c, bucket, key, options, int(parts), int64(partBytes))
}

func startDownload(c *C.UplinkProject, bucket, key *C.char, options *C.UplinkDownloadOptions, parts int, partBytes int64) C.UplinkDownloadResult {
	p, err := lookupProject(c)
	if err != nil || bucket == nil || key == nil {
		return C.UplinkDownloadResult{error: mallocError(firstErr(err, errNull))}
	}
	opts := &object.DownloadObjectOptions{Offset: 0, Length: -1}
	if options != nil {
		opts.Offset = int64(options.offset)
		opts.Length = int64(options.length)
	}
	bucketName, keyName := C.GoString(bucket), C.GoString(key)
	// The download lives in s; starting it asks the satellite where the
	// object's segments are (no data moves before the first read).
	s := p.child()
	var first *object.VersionedDownload
	start := p.limits.forBytes(0)
	if s.watch(start, func() { first, err = openDownload(s.ctx, p.Project, bucketName, keyName, opts) }) {
		err = &timeoutError{op: "start download", after: start}
	}
	if err != nil {
		s.cancel()
		return C.UplinkDownloadResult{error: mallocError(err)}
	}
	info := first.Info()
	d := &download{scope: s, reader: first, object: &info.Object, limits: p.limits, streams: 1}
	if rangeEnd, ok := downloadEnd(opts, info.System.ContentLength); ok && parts > 1 && partBytes > 0 &&
		rangeEnd-opts.Offset > partBytes {
		ahead := newAheadReader(s, p, bucketName, keyName, &info.Object, opts.Offset, rangeEnd, parts, partBytes)
		ahead.firstPart = first
		d.reader, d.streams = ahead, int64(parts)
		d.budget = reserveMemory(min(int64(parts)*partBytes, rangeEnd-opts.Offset) + int64(parts)*aheadPartOverheadBytes)
		ahead.start()
	}
	cd := (*C.UplinkDownload)(calloc(1, C.sizeof_UplinkDownload))
	cd._handle = addHandle(d)
	return C.UplinkDownloadResult{download: cd}
}

// downloadEnd is where the range of opts ends in an object of size bytes; not
// ok for a suffix range (a negative offset), which is read as a plain download.
func downloadEnd(opts *object.DownloadObjectOptions, size int64) (int64, bool) {
	if opts.Offset < 0 || opts.Offset > size {
		return 0, false
	}
	if opts.Length < 0 || opts.Offset+opts.Length > size {
		return size, true
	}
	return opts.Offset + opts.Length, true
}

func lookupDownload(c *C.UplinkDownload) (*download, error) {
	if c == nil {
		return nil, errNull
	}
	d, ok := getHandle(c._handle).(*download)
	if !ok {
		return nil, errInvalidHandle
	}
	return d, nil
}

//export uplink_download_read
func uplink_download_read(c *C.UplinkDownload, buf unsafe.Pointer, length C.size_t) C.UplinkReadResult {
	d, err := lookupDownload(c)
	if err != nil {
		return C.UplinkReadResult{error: mallocError(err)}
	}
	if buf == nil || length == 0 {
		return C.UplinkReadResult{error: mallocError(errNull)}
	}
	if d.timedOut > 0 {
		return C.UplinkReadResult{error: mallocError(&timeoutError{op: "download read", after: d.timedOut})}
	}
	// One call fills the caller's buffer (uplink's reads return a few KiB each:
	// a call per read would cost a C round trip per stripe). The call waits for
	// at most its bytes at the least rate, shared with the other parts in flight
	// (and, at a segment boundary, one satellite request).
	var n int
	limit := d.limits.forBytes(int64(length) * d.streams)
	if d.watch(limit, func() { n, err = d.fill(unsafe.Slice((*byte)(buf), int(length))) }) {
		d.timedOut = limit
		n, err = 0, &timeoutError{op: "download read", after: limit}
	}
	return C.UplinkReadResult{bytes_read: C.size_t(n), error: mallocError(err)}
}

// fill reads into p until it is full, the download ends or fails. Bytes read
// before an error (or the end) are returned first, the error by the next call.
// uplink's Read may return (0, nil) where one segment ends and the next begins;
// a C caller would take 0 bytes for the end of the stream, so such reads are
// retried, a bounded number of times in a row.
func (d *download) fill(p []byte) (n int, err error) {
	if d.failed != nil {
		return 0, d.failed
	}
	for empty := 0; n < len(p) && empty < maxEmptyReads; {
		k, err := d.reader.Read(p[n:])
		n += k
		if err != nil {
			if n == 0 {
				return 0, err
			}
			d.failed = err
			return n, nil
		}
		if k == 0 {
			empty++
		} else {
			empty = 0
		}
	}
	return n, nil
}

//export uplink_download_info
func uplink_download_info(c *C.UplinkDownload) C.UplinkObjectResult {
	d, err := lookupDownload(c)
	if err != nil {
		return C.UplinkObjectResult{error: mallocError(err)}
	}
	return objectResult(d.object, nil)
}

//export uplink_close_download
func uplink_close_download(c *C.UplinkDownload) *C.UplinkError {
	d, err := lookupDownload(c)
	if err != nil {
		return mallocError(err)
	}
	defer d.budget.release()
	return mallocError(d.reader.Close())
}

//export uplink_free_read_result
func uplink_free_read_result(result C.UplinkReadResult) {
	uplink_free_error(result.error)
}

//export uplink_free_download_result
func uplink_free_download_result(result C.UplinkDownloadResult) {
	uplink_free_error(result.error)
	if result.download != nil {
		if d, ok := getHandle(result.download._handle).(*download); ok {
			d.cancel()
			d.budget.release()
		}
		delHandle(result.download._handle)
		cfree(unsafe.Pointer(result.download))
	}
}
