package tokenchecker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// TestCallTimeout: CallTimeoutMS (call_timeout_ms) bounds each call end to end in the library,
// even when the Go context allows longer. The server answers after 5 s, which the request
// timeout (10 s) would wait for, and the call would then succeed; with a 300 ms call timeout it
// fails with ErrAuthUnavailable, after at least 300 ms and long before 5 s: the introspection,
// the Groups request of an authorization, the dependent-token grant; and a Retry-After pause
// longer than the time left ends the call at once instead of sleeping.
func TestCallTimeout(t *testing.T) {
	const callTimeout = 300 * time.Millisecond
	const latencyMS = 5000
	c := newChecker(t, func(cfg *tokenchecker.Config) {
		cfg.CallTimeoutMS = int(callTimeout / time.Millisecond)
		cfg.RequestTimeoutMS = 10000
		cfg.MaxRetries = tokenchecker.Int(1)
	})
	group := "urn:globus:groups:id:" + fakeglobus.GroupMember
	cases := []struct {
		name   string
		cached bool // the token's check is cached before the fault
		fault  fakeglobus.Fault
		waits  bool // the call waits for its deadline (else it ends at once)
		call   func(ctx context.Context, tok string) error
	}{
		{"introspection", false, fakeglobus.Fault{Endpoint: "introspect", LatencyMS: latencyMS}, true,
			func(ctx context.Context, tok string) error {
				_, err := c.Check(ctx, tok)
				return err
			}},
		{"groups", true, fakeglobus.Fault{Endpoint: "groups", LatencyMS: latencyMS}, true,
			func(ctx context.Context, tok string) error {
				_, err := c.Authorize(ctx, tok, []string{group}, tokenchecker.AuthorizeOptions{})
				return err
			}},
		{"grant", true, fakeglobus.Fault{Endpoint: "dependent_token", LatencyMS: latencyMS}, true,
			func(ctx context.Context, tok string) error {
				_, err := c.DependentToken(ctx, tok, fakeglobus.TransferScope)
				return err
			}},
		{"Retry-After", false, fakeglobus.Fault{Endpoint: "introspect", Status: 503, RetryAfter: 10}, false,
			func(ctx context.Context, tok string) error {
				_, err := c.Check(ctx, tok)
				return err
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := newToken(t, nil)
			if tc.cached {
				if _, err := c.Check(ctx, tok); err != nil {
					t.Fatal(err)
				}
			}
			setFault(t, tc.fault)
			// A context with a deadline far beyond the call timeout: the library ends first.
			cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			start := time.Now()
			err := tc.call(cctx, tok)
			elapsed := time.Since(start)
			wantCode(t, err, tokenchecker.ErrAuthUnavailable, tok)
			if elapsed >= 2500*time.Millisecond {
				t.Fatalf("took %v with a call timeout of %v (the server answers after %d ms)", elapsed, callTimeout, latencyMS)
			}
			if tc.waits && elapsed < callTimeout-50*time.Millisecond {
				t.Fatalf("failed after %v, before the call timeout (%v): %v", elapsed, callTimeout, err)
			}
		})
	}
}

// TestCallTimeoutValues: 0 leaves the key out (the library's default); the library refuses
// values outside 1..600000, naming the key.
func TestCallTimeoutValues(t *testing.T) {
	cfg := config()
	if doc, _ := cfg.JSON(); strings.Contains(doc, "call_timeout_ms") {
		t.Fatalf("a zero CallTimeoutMS is sent: %s", doc)
	}
	for _, ms := range []int{1, 600000} {
		cfg.CallTimeoutMS = ms
		c, err := tokenchecker.New(cfg)
		if err != nil {
			t.Fatalf("CallTimeoutMS %d: %v", ms, err)
		}
		c.Close()
	}
	for _, ms := range []int{-1, 600001} {
		cfg.CallTimeoutMS = ms
		_, err := tokenchecker.New(cfg)
		if !errors.Is(err, tokenchecker.ErrInvalidConfig) || !strings.Contains(err.Error(), "call_timeout_ms") {
			t.Fatalf("CallTimeoutMS %d: %v", ms, err)
		}
	}
	raw := `{"client_id":"test-client","client_secret":"test-secret","expected_scopes":["x"],` +
		`"verify_credentials":false,"call_timeout_ms":0}`
	if _, err := tokenchecker.New(tokenchecker.Config{RawJSON: raw}); !errors.Is(err, tokenchecker.ErrInvalidConfig) {
		t.Fatalf("call_timeout_ms 0: %v", err)
	}
}
