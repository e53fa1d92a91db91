package main

// #include "uplink_definitions.h"
import "C"

import (
	"context"
	"time"
	"unsafe"

	"storj.io/uplink"
)

// requestAccessTimeout bounds the satellite round trip of
// uplink_request_access_with_passphrase, which has no cancel handle and no
// timeout argument (syncd_request_access_with_passphrase has one).
const requestAccessTimeout = 60 * time.Second

func accessResult(access *uplink.Access, err error) C.UplinkAccessResult {
	if err != nil {
		return C.UplinkAccessResult{error: mallocError(err)}
	}
	c := (*C.UplinkAccess)(calloc(1, C.sizeof_UplinkAccess))
	c._handle = addHandle(access)
	return C.UplinkAccessResult{access: c}
}

//export uplink_parse_access
func uplink_parse_access(serialized *C.char) C.UplinkAccessResult {
	if serialized == nil {
		return C.UplinkAccessResult{error: mallocError(errNull)}
	}
	return accessResult(uplink.ParseAccess(C.GoString(serialized)))
}

//export uplink_request_access_with_passphrase
func uplink_request_access_with_passphrase(satellite, apiKey, passphrase *C.char) C.UplinkAccessResult {
	if satellite == nil || apiKey == nil || passphrase == nil {
		return C.UplinkAccessResult{error: mallocError(errNull)}
	}
	return requestAccess(satellite, apiKey, passphrase, requestAccessTimeout)
}

// syncd_request_access_with_passphrase is a syncd extension (not in uplink-c):
// uplink_request_access_with_passphrase whose satellite round trip ends with
// SYNCD_ERROR_TIMEOUT after timeoutMilliseconds (<= 0: the default, 60 s).
//
//export syncd_request_access_with_passphrase
func syncd_request_access_with_passphrase(satellite, apiKey, passphrase *C.char, timeoutMilliseconds C.int64_t) C.UplinkAccessResult {
	if satellite == nil || apiKey == nil || passphrase == nil {
		return C.UplinkAccessResult{error: mallocError(errNull)}
	}
	d := time.Duration(timeoutMilliseconds) * time.Millisecond
	if d <= 0 {
		d = requestAccessTimeout
	}
	return requestAccess(satellite, apiKey, passphrase, d)
}

func requestAccess(satellite, apiKey, passphrase *C.char, d time.Duration) C.UplinkAccessResult {
	var access *uplink.Access
	err := callWithin(context.Background(), "request access", d, func(ctx context.Context) (err error) {
		access, err = uplink.RequestAccessWithPassphrase(ctx, C.GoString(satellite), C.GoString(apiKey), C.GoString(passphrase))
		return err
	})
	return accessResult(access, err)
}

func lookupAccess(c *C.UplinkAccess) (*uplink.Access, error) {
	if c == nil {
		return nil, errNull
	}
	access, ok := getHandle(c._handle).(*uplink.Access)
	if !ok {
		return nil, errInvalidHandle
	}
	return access, nil
}

//export uplink_access_satellite_address
func uplink_access_satellite_address(c *C.UplinkAccess) C.UplinkStringResult {
	access, err := lookupAccess(c)
	if err != nil {
		return C.UplinkStringResult{error: mallocError(err)}
	}
	return C.UplinkStringResult{string: C.CString(access.SatelliteAddress())}
}

//export uplink_access_serialize
func uplink_access_serialize(c *C.UplinkAccess) C.UplinkStringResult {
	access, err := lookupAccess(c)
	if err != nil {
		return C.UplinkStringResult{error: mallocError(err)}
	}
	s, err := access.Serialize()
	if err != nil {
		return C.UplinkStringResult{error: mallocError(err)}
	}
	return C.UplinkStringResult{string: C.CString(s)}
}

//export uplink_free_access_result
func uplink_free_access_result(result C.UplinkAccessResult) {
	uplink_free_error(result.error)
	if result.access != nil {
		delHandle(result.access._handle)
		cfree(unsafe.Pointer(result.access))
	}
}

//export uplink_free_string_result
func uplink_free_string_result(result C.UplinkStringResult) {
	uplink_free_error(result.error)
	cfree(unsafe.Pointer(result.string))
}
