// C types of syncd's libuplink shim.
//
// The layout and names follow the public uplink-c ABI (storj.io/uplink-c,
// header uplink_definitions.h) for the subset syncd uses, so that
// syncd/remotes/_uplink.py can load either this shim or a real uplink-c
// build. Written for syncd; only the ABI is shared.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct UplinkAccess { size_t _handle; } UplinkAccess;
typedef struct UplinkProject { size_t _handle; } UplinkProject;
typedef struct UplinkUpload { size_t _handle; } UplinkUpload;
typedef struct UplinkDownload { size_t _handle; } UplinkDownload;
typedef struct UplinkObjectIterator { size_t _handle; } UplinkObjectIterator;

typedef struct UplinkConfig {
    const char *user_agent;
    int32_t dial_timeout_milliseconds;
    const char *temp_directory;
} UplinkConfig;

typedef struct UplinkBucket {
    char *name;
    int64_t created;
} UplinkBucket;

typedef struct UplinkSystemMetadata {
    int64_t created;
    int64_t expires;
    int64_t content_length;
} UplinkSystemMetadata;

typedef struct UplinkCustomMetadataEntry {
    char *key;
    size_t key_length;
    char *value;
    size_t value_length;
} UplinkCustomMetadataEntry;

typedef struct UplinkCustomMetadata {
    UplinkCustomMetadataEntry *entries;
    size_t count;
} UplinkCustomMetadata;

typedef struct UplinkObject {
    char *key;
    bool is_prefix;
    UplinkSystemMetadata system;
    UplinkCustomMetadata custom;
} UplinkObject;

typedef struct UplinkUploadOptions {
    int64_t expires; // unix seconds; 0 or negative: never
} UplinkUploadOptions;

typedef struct UplinkDownloadOptions {
    int64_t offset;
    int64_t length; // negative: to the end
} UplinkDownloadOptions;

typedef struct UplinkListObjectsOptions {
    const char *prefix;
    const char *cursor;
    bool recursive;
    bool system;
    bool custom;
} UplinkListObjectsOptions;

typedef struct UplinkError {
    int32_t code;
    char *message;
} UplinkError;

// EOF (-1, from stdio.h) marks the end of a download stream.
#define UPLINK_ERROR_INTERNAL 0x02
#define UPLINK_ERROR_CANCELED 0x03
#define UPLINK_ERROR_INVALID_HANDLE 0x04
#define UPLINK_ERROR_TOO_MANY_REQUESTS 0x05
#define UPLINK_ERROR_BANDWIDTH_LIMIT_EXCEEDED 0x06
#define UPLINK_ERROR_STORAGE_LIMIT_EXCEEDED 0x07
#define UPLINK_ERROR_SEGMENTS_LIMIT_EXCEEDED 0x08
#define UPLINK_ERROR_PERMISSION_DENIED 0x09
#define UPLINK_ERROR_BUCKET_NAME_INVALID 0x10
#define UPLINK_ERROR_BUCKET_ALREADY_EXISTS 0x11
#define UPLINK_ERROR_BUCKET_NOT_EMPTY 0x12
#define UPLINK_ERROR_BUCKET_NOT_FOUND 0x13
#define UPLINK_ERROR_OBJECT_KEY_INVALID 0x20
#define UPLINK_ERROR_OBJECT_NOT_FOUND 0x21
#define UPLINK_ERROR_UPLOAD_DONE 0x22

// syncd extension (not an uplink-c code): a conditional write found the key
// taken (syncd_upload_object_if_absent), or a download read ahead found its
// object replaced (syncd_download_object_ahead).
#define SYNCD_ERROR_FAILED_PRECONDITION 0x1001
// syncd extension: a call did not return within the deadline that
// syncd_project_set_limits (or syncd_request_access_with_passphrase) gave it.
#define SYNCD_ERROR_TIMEOUT 0x1002

typedef struct UplinkAccessResult { UplinkAccess *access; UplinkError *error; } UplinkAccessResult;
typedef struct UplinkProjectResult { UplinkProject *project; UplinkError *error; } UplinkProjectResult;
typedef struct UplinkBucketResult { UplinkBucket *bucket; UplinkError *error; } UplinkBucketResult;
typedef struct UplinkObjectResult { UplinkObject *object; UplinkError *error; } UplinkObjectResult;
typedef struct UplinkUploadResult { UplinkUpload *upload; UplinkError *error; } UplinkUploadResult;
typedef struct UplinkDownloadResult { UplinkDownload *download; UplinkError *error; } UplinkDownloadResult;
typedef struct UplinkWriteResult { size_t bytes_written; UplinkError *error; } UplinkWriteResult;
typedef struct UplinkReadResult { size_t bytes_read; UplinkError *error; } UplinkReadResult;
typedef struct UplinkStringResult { char *string; UplinkError *error; } UplinkStringResult;

typedef struct UplinkMoveObjectOptions { int32_t _reserved; } UplinkMoveObjectOptions;
typedef struct UplinkCopyObjectOptions { int32_t _reserved; } UplinkCopyObjectOptions;
