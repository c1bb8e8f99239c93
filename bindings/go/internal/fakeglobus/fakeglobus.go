// Package fakeglobus starts the repository's fake Globus server (target/release/fake-globus)
// for tests and drives its control API. See fake-globus/README.md for the API.
package fakeglobus

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"
)

// EnvBinary names the environment variable that overrides the fake server's path.
const EnvBinary = "TOKENCHECKER_FAKE_GLOBUS"

// Fixture values seeded by the fake (fake-globus/src/fixtures.rs).
const (
	ClientID      = "test-client"
	ClientSecret  = "test-secret"
	TestScope     = "urn:globus:auth:scope:test:all"
	TransferScope = "urn:globus:auth:scope:transfer.api.globus.org:all"
	AliceID       = "a11ce000-0000-4000-8000-000000000001"
	AliceID2      = "a11ce000-0000-4000-8000-000000000002"
	BobID         = "b0b00000-0000-4000-8000-000000000003"
	DefaultID     = "d0000000-0000-4000-8000-000000000000"
	GroupMember   = "11111111-1111-4111-8111-111111111111"
	GroupAdmin    = "22222222-2222-4222-8222-222222222222"
	GroupPending  = "33333333-3333-4333-8333-333333333333"
)

// Server is a running fake-globus process.
type Server struct {
	URL    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	client *http.Client
}

// Binary is the fake's path: $TOKENCHECKER_FAKE_GLOBUS, or def (relative to the test's
// working directory, its package directory).
func Binary(def string) string {
	if p := os.Getenv(EnvBinary); p != "" {
		return p
	}
	return def
}

// Start runs the fake at path and waits for its URL line. It exits when Stop is called or when
// the test process dies (its stdin closes).
func Start(path string) (*Server, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("fake-globus not found at %s (build it: cd <repo> && cargo build --release -p fake-globus, or set %s): %w", path, EnvBinary, err)
	}
	cmd := exec.Command(path, "--exit-on-stdin-eof")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	s := &Server{cmd: cmd, stdin: stdin, client: &http.Client{Timeout: 10 * time.Second}}
	select {
	case line, ok := <-lines:
		u, found := strings.CutPrefix(line, "FAKE_GLOBUS_URL=")
		if !ok || !found {
			s.Stop()
			return nil, fmt.Errorf("fake-globus printed %q instead of FAKE_GLOBUS_URL=…", line)
		}
		s.URL = u
	case <-time.After(20 * time.Second):
		s.Stop()
		return nil, errors.New("fake-globus did not print its URL within 20 s")
	}
	return s, nil
}

// Stop kills the fake and waits for it.
func (s *Server) Stop() {
	_ = s.stdin.Close()
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

func (s *Server) do(method, path string, body any, out any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.URL+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fake-globus %s %s: %s: %s", method, path, resp.Status, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Spec is a token spec (fake-globus/README.md, "Token spec").
type Spec map[string]any

// AddTokens adds or replaces tokens.
func (s *Server) AddTokens(tokens map[string]Spec) error {
	return s.do(http.MethodPost, "/_control/tokens", tokens, nil)
}

// RemoveToken removes one token.
func (s *Server) RemoveToken(token string) error {
	return s.do(http.MethodDelete, "/_control/tokens/"+url.PathEscape(token), nil, nil)
}

// Counters are the fake's request counters.
type Counters struct {
	Introspect     int `json:"introspect"`
	DependentToken int `json:"dependent_token"`
	Groups         int `json:"groups"`
	MaxConcurrent  struct {
		Introspect     int `json:"introspect"`
		DependentToken int `json:"dependent_token"`
		Groups         int `json:"groups"`
	} `json:"max_concurrent"`
}

// Total is the number of requests to every endpoint.
func (c Counters) Total() int { return c.Introspect + c.DependentToken + c.Groups }

// Counters reads the request counters.
func (s *Server) Counters() (Counters, error) {
	var c Counters
	err := s.do(http.MethodGet, "/_control/counters", nil, &c)
	return c, err
}

// Fault is a fault spec (fake-globus/README.md, "Faults"); zero fields are left out.
type Fault struct {
	Endpoint   string `json:"endpoint"`
	LatencyMS  int    `json:"latency_ms,omitempty"`
	Status     int    `json:"status,omitempty"`
	Body       string `json:"body,omitempty"`
	RetryAfter int    `json:"retry_after,omitempty"`
	Mode       string `json:"mode,omitempty"`
	Count      int    `json:"count,omitempty"`
}

// SetFault sets the fault of one endpoint key.
func (s *Server) SetFault(f Fault) error {
	return s.do(http.MethodPost, "/_control/faults", f, nil)
}

// ClearFaults clears every fault.
func (s *Server) ClearFaults() error {
	return s.do(http.MethodDelete, "/_control/faults", nil, nil)
}

// Reset zeroes the counters and clears the faults.
func (s *Server) Reset() error {
	return s.do(http.MethodPost, "/_control/reset", nil, nil)
}
