package main

// #include "uplink_definitions.h"
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"unsafe"

	"storj.io/common/rpc/rpcstatus"
	"storj.io/uplink"
	"storj.io/uplink/private/object"
)

var (
	errInvalidHandle = errors.New("invalid handle")
	errNull          = errors.New("NULL argument")
)

// codes is checked in order: the first matching sentinel gives the code.
var codes = []struct {
	err  error
	code C.int32_t
}{
	{context.Canceled, C.UPLINK_ERROR_CANCELED},
	{errInvalidHandle, C.UPLINK_ERROR_INVALID_HANDLE},
	{uplink.ErrTooManyRequests, C.UPLINK_ERROR_TOO_MANY_REQUESTS},
	{uplink.ErrBandwidthLimitExceeded, C.UPLINK_ERROR_BANDWIDTH_LIMIT_EXCEEDED},
	{uplink.ErrStorageLimitExceeded, C.UPLINK_ERROR_STORAGE_LIMIT_EXCEEDED},
	{uplink.ErrSegmentsLimitExceeded, C.UPLINK_ERROR_SEGMENTS_LIMIT_EXCEEDED},
	{uplink.ErrPermissionDenied, C.UPLINK_ERROR_PERMISSION_DENIED},
	{uplink.ErrBucketNameInvalid, C.UPLINK_ERROR_BUCKET_NAME_INVALID},
	{uplink.ErrBucketAlreadyExists, C.UPLINK_ERROR_BUCKET_ALREADY_EXISTS},
	{uplink.ErrBucketNotEmpty, C.UPLINK_ERROR_BUCKET_NOT_EMPTY},
	{uplink.ErrBucketNotFound, C.UPLINK_ERROR_BUCKET_NOT_FOUND},
	{uplink.ErrObjectKeyInvalid, C.UPLINK_ERROR_OBJECT_KEY_INVALID},
	{uplink.ErrObjectNotFound, C.UPLINK_ERROR_OBJECT_NOT_FOUND},
	{uplink.ErrUploadDone, C.UPLINK_ERROR_UPLOAD_DONE},
}

// mallocError converts err to a C error (nil for nil). io.EOF becomes code
// EOF without a message: it is the normal end of a download, not a failure.
func mallocError(err error) *C.UplinkError {
	if err == nil {
		return nil
	}
	cerr := (*C.UplinkError)(calloc(1, C.sizeof_UplinkError))
	if errors.Is(err, io.EOF) {
		cerr.code = C.EOF
		return cerr
	}
	cerr.code = C.UPLINK_ERROR_INTERNAL
	for _, c := range codes {
		if errors.Is(err, c.err) {
			cerr.code = c.code
			break
		}
	}
	if errors.Is(err, object.ErrFailedPrecondition) || rpcstatus.Code(err) == rpcstatus.FailedPrecondition ||
		errors.Is(err, errReplaced) {
		cerr.code = C.SYNCD_ERROR_FAILED_PRECONDITION
	}
	var timeout *timeoutError
	if errors.As(err, &timeout) {
		cerr.code = C.SYNCD_ERROR_TIMEOUT
	}
	cerr.message = C.CString(fmt.Sprintf("%v", err))
	return cerr
}

//export uplink_free_error
func uplink_free_error(err *C.UplinkError) {
	if err == nil {
		return
	}
	cfree(unsafe.Pointer(err.message))
	cfree(unsafe.Pointer(err))
}
