package main

import (
	"bytes"
	"io"
	"testing"
	"time"

	"storj.io/uplink"
	"storj.io/uplink/private/object"
)

// trickle hands out its bytes a few KiB per Read, with a pause before each,
// as an uplink download does (one stripe at a time, as the pieces arrive).
type trickle struct {
	data  []byte
	step  int
	pause time.Duration
	info  object.VersionedObject
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(t.pause)
	n := copy(p[:min(len(p), t.step)], t.data)
	t.data = t.data[n:]
	return n, nil
}

func (t *trickle) Close() error { return nil }

func (t *trickle) Info() *object.VersionedObject { return &t.info }

// A part that arrives 4 KiB at a time, read 256 KiB at a time: Read is woken
// about once per read (when the part holds what it asked for), not at each of
// the source's reads; the bytes come back whole and in order.
func TestReadIsWokenOncePerRead(t *testing.T) {
	const size, step, readSize = 4 << 20, 4 << 10, 256 << 10
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	obj := &uplink.Object{System: uplink.SystemMetadata{Created: time.Unix(1, 0), ContentLength: size}}
	source := &trickle{data: data, step: step, pause: 20 * time.Microsecond, info: object.VersionedObject{Object: *obj}}
	p := &project{scope: rootScope(), limits: &limits{}}
	r := newAheadReader(p.child(), p, "bucket", "key", obj, 0, size, 1, size)
	r.firstPart = source
	r.start()
	defer func() { _ = r.Close() }()

	var got []byte
	buf := make([]byte, readSize)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, not the part's %d in order", len(got), len(data))
	}
	if reads := size / readSize; r.wakes > reads+2 {
		t.Fatalf("Read was woken %d times for %d reads (the source read %d times)", r.wakes, reads, size/step)
	}
}
