package main

import (
	"context"
	"errors"
	"io"
	"maps"
	"sync"
	"time"

	"storj.io/uplink"
	"storj.io/uplink/private/object"
)

// A download read ahead: the range is cut into parts of partBytes, and up to
// `parts` of them are fetched at once, each by its own goroutine over its own
// uplink download (its own satellite request and node connections), into a
// buffer of its own. Read returns the bytes in order: the first part's as they
// arrive, the next ones' once the reader gets to them. A part whose bytes have
// all been read hands its buffer to the next part not started yet, so a
// download never holds more than parts × partBytes, whatever the object's
// size. One uplink download streams a segment's pieces one stripe after the
// other; several in flight keep more nodes (and, on a machine with spare
// cores, more cores decoding) busy, as rclone's multi-thread downloads do.
//
// Every part checks that it reads the object the download started with (its
// creation time, size and metadata; the satellite gives no versions in a bucket
// without versioning): an object replaced meanwhile fails the download with
// errReplaced instead of mixing versions.
// A part that fails fails the download when the reader gets to it; a part that
// moves no bytes for its deadline cancels the whole download.

// errReplaced is what a part finds when the object changed since the download
// started (code SYNCD_ERROR_FAILED_PRECONDITION).
var errReplaced = errors.New("the object was replaced while it was downloaded")

// A download refused for the request rate is asked again up to tooManyRequestsTries
// times in all, after pauses that double from the first (5 ms, ..., 0.32 s: 0.64 s in all).
const (
	// What a part in flight holds besides its buffer (its node connections'
	// buffers, erasure decoding), counted in the download's memory budget so
	// the collector does not run every few MiB to stay under the soft limit.
	aheadPartOverheadBytes = 4 << 20

	tooManyRequestsTries = 8
	tooManyRequestsPause = 5 * time.Millisecond
)

// partSource is what a part reads from: its uplink download (in tests, a fake).
type partSource interface {
	io.ReadCloser
	Info() *object.VersionedObject
}

type aheadPart struct {
	offset int64
	buf    []byte // the part's bytes: [0:filled) have arrived, [read:filled) are unread
	filled int
	read   int
	done   bool
	err    error
}

type aheadReader struct {
	s         scope
	project   *project
	bucket    string
	key       string
	object    *uplink.Object // what the download started with
	end       int64
	parts     int
	partBytes int64
	// firstPart is the download opened to learn the object's size and version:
	// it reads the first part (it was opened for the whole range, and moves no
	// data until read).
	firstPart partSource

	mu      sync.Mutex
	changed *sync.Cond // the part Read waits for has what it needs, or ended
	// waitFor is the part Read waits for (the first in the queue; nil: Read does
	// not wait), until it has filled waitFill bytes: what the read asked for, so
	// Read is woken once per read, not at each of uplink's reads of a few KiB.
	waitFor  *aheadPart
	waitFill int
	wakes    int // how often Read was woken (tests count them)
	queue    []*aheadPart
	next     int64 // where the next part not started yet begins
	closed   bool
}

func newAheadReader(s scope, p *project, bucket, key string, obj *uplink.Object, offset, end int64, parts int, partBytes int64) *aheadReader {
	r := &aheadReader{
		s: s, project: p, bucket: bucket, key: key, object: obj,
		end: end, parts: parts, partBytes: partBytes, next: offset,
	}
	r.changed = sync.NewCond(&r.mu)
	return r
}

// start sets the first parts going.
func (r *aheadReader) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := 0; i < r.parts && r.next < r.end; i++ {
		r.startPart(nil)
	}
}

// startPart starts the next part, in buf when it is large enough; r.mu is held.
func (r *aheadReader) startPart(buf []byte) {
	size := min(r.partBytes, r.end-r.next)
	if int64(cap(buf)) < size {
		buf = make([]byte, size)
	}
	part := &aheadPart{offset: r.next, buf: buf[:size]}
	r.next += size
	r.queue = append(r.queue, part)
	source := r.firstPart
	r.firstPart = nil
	go r.fetch(part, source)
}

// fetch fills part, from source when given (else from a download of its own),
// under the deadline of its bytes: a part that stalls cancels the download.
func (r *aheadReader) fetch(part *aheadPart, source partSource) {
	var err error
	limit := r.project.limits.forBytes(int64(len(part.buf)) * int64(r.parts))
	if r.s.watch(limit, func() { err = r.fill(part, source) }) {
		err = &timeoutError{op: "download part", after: limit}
	}
	r.mu.Lock()
	part.done, part.err = true, err
	r.changed.Broadcast()
	r.mu.Unlock()
}

func (r *aheadReader) fill(part *aheadPart, source partSource) (err error) {
	if source == nil {
		if source, err = r.open(part); err != nil {
			return err
		}
	}
	defer func() { _ = source.Close() }() // its bytes are all in, or the part failed anyway
	if !sameObject(r.object, &source.Info().Object) {
		return errReplaced
	}
	filled, empty := 0, 0
	for filled < len(part.buf) {
		n, err := source.Read(part.buf[filled:])
		filled += n
		if n > 0 {
			empty = 0
			r.mu.Lock()
			part.filled = filled
			if r.waitFor == part && filled >= r.waitFill {
				r.changed.Broadcast()
			}
			r.mu.Unlock()
		} else if empty++; empty > maxEmptyReads {
			return errors.New("download part made no progress")
		}
		if errors.Is(err, io.EOF) && filled < len(part.buf) {
			return io.ErrUnexpectedEOF // the object is shorter than it said
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// open starts the download of part.
func (r *aheadReader) open(part *aheadPart) (partSource, error) {
	opts := &object.DownloadObjectOptions{Offset: part.offset, Length: int64(len(part.buf))}
	d, err := openDownload(r.s.ctx, r.project.Project, r.bucket, r.key, opts)
	if err != nil {
		return nil, err // not a nil *VersionedDownload in a non-nil interface
	}
	return d, nil
}

// openDownload starts a download. The satellite limits how often one object may
// be asked for (by default a burst of 3, then one request per millisecond), and
// the parts of a download read ahead ask at once: a refusal for the rate is
// asked again after a pause, a few times.
func openDownload(ctx context.Context, p *uplink.Project, bucket, key string, opts *object.DownloadObjectOptions) (*object.VersionedDownload, error) {
	pause := tooManyRequestsPause
	for try := 1; ; try++ {
		d, err := object.DownloadObject(ctx, p, bucket, key, nil, opts)
		if err == nil || !errors.Is(err, uplink.ErrTooManyRequests) || try == tooManyRequestsTries {
			return d, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause *= 2
	}
}

// sameObject reports whether a and b are the same version of an object.
func sameObject(a, b *uplink.Object) bool {
	return a.System.Created.Equal(b.System.Created) && a.System.ContentLength == b.System.ContentLength &&
		maps.Equal(a.Custom, b.Custom)
}

// Read returns the next bytes of the range: as many as p holds, or the rest of
// the first part, waiting for them if they have not arrived (bytes that have
// are returned at once only when the part ended); io.EOF at its end.
func (r *aheadReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.closed {
			return 0, errors.New("download closed")
		}
		if len(r.queue) == 0 {
			return 0, io.EOF
		}
		head := r.queue[0]
		want := min(head.read+len(p), len(head.buf))
		if head.read < head.filled && (head.filled >= want || head.done) {
			n := copy(p, head.buf[head.read:head.filled])
			head.read += n
			return n, nil
		}
		if head.done {
			if head.err != nil {
				return 0, head.err
			}
			r.queue[0] = nil
			r.queue = r.queue[1:]
			if r.next < r.end {
				r.startPart(head.buf)
			}
			continue
		}
		r.waitFor, r.waitFill = head, want
		r.changed.Wait()
		r.waitFor = nil
		r.wakes++
	}
}

// Close ends the parts in flight (their goroutines return once their uplink
// calls see the cancelled context; they touch only Go memory).
func (r *aheadReader) Close() error {
	r.mu.Lock()
	r.closed = true
	first := r.firstPart
	r.firstPart = nil
	r.queue = nil
	r.mu.Unlock()
	r.s.cancel()
	if first != nil {
		return first.Close()
	}
	return nil
}

var (
	_ objectReader = (*aheadReader)(nil)
	_ objectReader = (*object.VersionedDownload)(nil)
)
