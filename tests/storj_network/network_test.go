// Package storjnetwork runs a throw-away local Storj network (testplanet:
// 1 satellite, 5 storage nodes, 1 uplink) plus an optional gateway-st S3
// endpoint for syncd's integration tests.
//
// It is a Go *test* on purpose: testplanet.Run needs a *testing.T, so the
// build compiles this package with `go test -c` into bin/storj-network.test,
// and the Python fixture runs that binary with -test.run '^TestNetwork$'.
// Without STORJ_NETWORK_INFO set, the test skips, so `go test ./...` stays cheap.
package storjnetwork

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"storj.io/common/grant"
	"storj.io/common/memory"
	"storj.io/common/storj"
	"storj.io/common/testcontext"
	"storj.io/storj/private/testplanet"
	"storj.io/storj/satellite"
	"storj.io/storj/storagenode"
	"storj.io/uplink"
)

// info is the contract with tests/storj_network/fixture.py: keep the JSON
// names in sync with StorjNetwork there.
type info struct {
	AccessGrant   string `json:"access_grant"`
	SatelliteAddr string `json:"satellite_addr"`
	APIKey        string `json:"api_key"`
	S3Endpoint    string `json:"s3_endpoint"`
	S3AccessKey   string `json:"s3_access_key"`
	S3SecretKey   string `json:"s3_secret_key"`

	// Grants for the bad-input tests, all valid and parseable:
	// read_only_grant may list and download but not upload or delete;
	// other_project_grant belongs to a second project on the same
	// satellite (it sees none of the first project's buckets);
	// foreign_satellite_grant names another satellite's node ID at this
	// satellite's address, as a grant made for another satellite does
	// once it reaches a server that is not that satellite.
	ReadOnlyGrant         string `json:"read_only_grant"`
	OtherProjectGrant     string `json:"other_project_grant"`
	ForeignSatelliteGrant string `json:"foreign_satellite_grant"`
}

// Bounds for the gateway start and stop: every wait here is finite.
const (
	gatewayStartTimeout = 90 * time.Second
	gatewayStopTimeout  = 10 * time.Second
)

func TestNetwork(t *testing.T) {
	infoPath := os.Getenv("STORJ_NETWORK_INFO")
	if infoPath == "" {
		t.Skip("STORJ_NETWORK_INFO not set: not starting a Storj network")
	}

	// Register for signals before the (slow) start so that an early SIGTERM
	// still leads to an orderly testplanet shutdown instead of a hard kill.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(stop)

	reconfigure := testplanet.DisablePeerCAWhitelist
	reconfigure.Satellite = testplanet.Combine(reconfigure.Satellite, raiseLimits)
	peerCA := reconfigure.StorageNode
	reconfigure.StorageNode = func(index int, config *storagenode.Config) {
		peerCA(index, config)
		// testplanet's 1 GB per node fills up in a few benchmark runs; the
		// nodes' real use is the data written, in the session's TMPDIR.
		config.Storage.AllocatedDiskSpace = 10 * memory.GB
	}

	config := testplanet.Config{
		SatelliteCount:   1,
		StorageNodeCount: 5,
		UplinkCount:      2, // the second one owns another project
		Reconfigure:      reconfigure,
		NonParallel:      true,
		// The network lives as long as the pytest session; the default
		// testcontext timeout (minutes) would tear it down under us.
		Timeout: 24 * time.Hour,
	}

	testplanet.Run(t, config, func(t *testing.T, ctx *testcontext.Context, planet *testplanet.Planet) {
		serve(t, ctx, planet, infoPath, stop)
	})
}

// raiseLimits lifts testplanet's small per-project defaults (10 buckets,
// 10,000 segments, 25 GB): one network serves a whole pytest session or a
// series of benchmark runs, and every test uses fresh buckets.
func raiseLimits(log *zap.Logger, index int, config *satellite.Config) {
	config.Metainfo.ProjectLimits.MaxBuckets = 10000
	config.Console.UsageLimits.Segment.Free = 100_000_000
	config.Console.UsageLimits.Storage.Free = memory.TB
	config.Console.UsageLimits.Bandwidth.Free = memory.TB
}

// serve publishes the network's coordinates and blocks until told to stop.
func serve(t *testing.T, ctx context.Context, planet *testplanet.Planet, infoPath string, stop <-chan os.Signal) {
	sat := planet.Satellites[0]
	up := planet.Uplinks[0]

	serialized, err := up.Access[sat.ID()].Serialize()
	if err != nil {
		t.Fatalf("serialize access: %v", err)
	}

	out := info{
		AccessGrant:   serialized,
		SatelliteAddr: sat.NodeURL().String(),
		APIKey:        up.APIKey[sat.ID()].Serialize(),
	}
	if err := badGrants(planet, &out); err != nil {
		t.Fatalf("grants for the bad-input tests: %v", err)
	}

	gateway, err := startGateway(ctx, serialized, &out)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	defer stopGateway(t, gateway)

	if err := writeInfo(infoPath, out); err != nil {
		t.Fatalf("write %s: %v", infoPath, err)
	}
	t.Logf("storj network ready: satellite %s, s3 %s", out.SatelliteAddr, out.S3Endpoint)

	waitForStop(t, ctx, stop, gateway)
}

// badGrants fills the grants that must fail in clear ways (see info).
func badGrants(planet *testplanet.Planet, out *info) error {
	sat := planet.Satellites[0]
	access := planet.Uplinks[0].Access[sat.ID()]

	readOnly, err := access.Share(uplink.Permission{AllowDownload: true, AllowList: true})
	if err != nil {
		return fmt.Errorf("share read-only: %w", err)
	}
	if out.ReadOnlyGrant, err = readOnly.Serialize(); err != nil {
		return err
	}

	if out.OtherProjectGrant, err = planet.Uplinks[1].Access[sat.ID()].Serialize(); err != nil {
		return err
	}

	// Same API key and encryption, but the satellite is named by another
	// peer's node ID: the TLS handshake proves the server is not it.
	parsed, err := grant.ParseAccess(out.AccessGrant)
	if err != nil {
		return err
	}
	parsed.SatelliteAddress = storj.NodeURL{ID: planet.StorageNodes[0].ID(), Address: sat.Addr()}.String()
	out.ForeignSatelliteGrant, err = parsed.Serialize()
	return err
}

// waitForStop returns on SIGTERM/SIGINT, on stdin EOF when asked to watch it
// (so an orphaned network dies with its parent), or when the gateway exits.
func waitForStop(t *testing.T, ctx context.Context, stop <-chan os.Signal, gateway *exec.Cmd) {
	stdinClosed := make(chan struct{})
	if os.Getenv("STORJ_NETWORK_WATCH_STDIN") == "1" {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinClosed)
		}()
	}
	gatewayDone := make(chan struct{})
	if gateway != nil {
		go func() {
			_ = gateway.Wait()
			close(gatewayDone)
		}()
	}

	select {
	case sig := <-stop:
		t.Logf("received %v, shutting down", sig)
	case <-stdinClosed:
		t.Log("stdin closed, shutting down")
	case <-gatewayDone:
		t.Error("gateway exited unexpectedly, shutting down")
	case <-ctx.Done():
		t.Logf("context done: %v", ctx.Err())
	}
}

// startGateway runs gateway-st (a separate binary, built from its own module
// so its dependency graph never fights storj.io/storj's) over the grant.
// It returns nil when STORJ_NETWORK_GATEWAY is unset: S3 is then not offered.
func startGateway(ctx context.Context, grant string, out *info) (*exec.Cmd, error) {
	bin := os.Getenv("STORJ_NETWORK_GATEWAY")
	if bin == "" {
		return nil, nil
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	accessKey, secretKey := randomKey(), randomKey()
	configDir, err := os.MkdirTemp("", "storj-gateway-")
	if err != nil {
		return nil, err
	}

	cmd := exec.Command(bin, "run",
		"--config-dir", configDir,
		"--access", grant,
		"--server.address", addr,
		"--minio.access-key", accessKey,
		"--minio.secret-key", secretKey,
		"--log.level", "info",
	)
	// The gateway logs go to our stderr, which the fixture sends to its log file.
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	// Own process group: a signal to us must not also reach the gateway
	// before we have stopped it in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if err := waitListening(ctx, addr, gatewayStartTimeout); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, err
	}

	out.S3Endpoint = "http://" + addr
	out.S3AccessKey = accessKey
	out.S3SecretKey = secretKey
	return cmd, nil
}

func stopGateway(t *testing.T, cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	// waitForStop's goroutine reaps the process; once reaped, signal 0 fails.
	deadline := time.Now().Add(gatewayStopTimeout)
	for time.Now().Before(deadline) && cmd.Process.Signal(syscall.Signal(0)) == nil {
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	t.Log("gateway stopped")
}

// freeLoopbackAddr asks the kernel for a free port on 127.0.0.1. There is a
// small race until the gateway binds it; acceptable for a test network.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

func waitListening(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listening on %s after %v", addr, timeout)
}

func randomKey() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// writeInfo writes atomically (temp file + rename): the fixture polls for
// the file and must never read a half-written one.
func writeInfo(path string, v info) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".storj-network-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		_ = os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		_ = os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
