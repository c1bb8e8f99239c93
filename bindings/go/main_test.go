package tokenchecker_test

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// fake is the fake Globus server every test uses. It is shared (as is the library's
// process-wide cache): tests use their own tokens (newToken) and do not run in parallel when
// they count requests.
var fake *fakeglobus.Server

func TestMain(m *testing.M) {
	s, err := fakeglobus.Start(fakeglobus.Binary("../../target/release/fake-globus"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenchecker tests:", err)
		os.Exit(1)
	}
	fake = s
	code := m.Run()
	s.Stop()
	os.Exit(code)
}

// config is the checker configuration for the fake, without the credential probe (so that
// New makes no request).
func config() tokenchecker.Config {
	return tokenchecker.Config{
		ClientID:          fakeglobus.ClientID,
		ClientSecret:      fakeglobus.ClientSecret,
		ExpectedScopes:    []string{fakeglobus.TestScope},
		AuthURL:           fake.URL,
		GroupsURL:         fake.URL,
		VerifyCredentials: tokenchecker.Bool(false),
	}
}

func newChecker(t testing.TB, mutate ...func(*tokenchecker.Config)) *tokenchecker.Checker {
	t.Helper()
	cfg := config()
	for _, f := range mutate {
		f(&cfg)
	}
	c, err := tokenchecker.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var tokenSeq atomic.Int64
var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// aliceSpec is tok-valid's spec: Alice, two identities, three groups (one pending), a
// transfer dependent token.
func aliceSpec() fakeglobus.Spec {
	return fakeglobus.Spec{
		"identity_set": []string{fakeglobus.AliceID, fakeglobus.AliceID2},
		"sub":          fakeglobus.AliceID,
		"username":     "alice@example.org",
		"name":         "Alice",
		"email":        "alice@example.org",
		"exp_in":       3600,
		"groups": []any{
			map[string]any{"id": fakeglobus.GroupMember, "role": "member", "status": "active"},
			map[string]any{"id": fakeglobus.GroupAdmin, "role": "admin", "status": "active"},
			map[string]any{"id": fakeglobus.GroupPending, "role": "member", "status": "pending"},
		},
		"dependent_tokens": []any{map[string]any{
			"scope":           fakeglobus.TransferScope,
			"resource_server": "transfer.api.globus.org",
		}},
	}
}

// newToken adds a token no other test uses to the fake (nil spec: Alice's) and removes it when
// the test ends.
func newToken(t testing.TB, spec fakeglobus.Spec) string {
	t.Helper()
	if spec == nil {
		spec = aliceSpec()
	}
	name := strings.Trim(unsafeChars.ReplaceAllString(t.Name(), "-"), "-")
	tok := fmt.Sprintf("go-%s-%d-%d", name, os.Getpid(), tokenSeq.Add(1))
	if err := fake.AddTokens(map[string]fakeglobus.Spec{tok: spec}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.RemoveToken(tok) })
	return tok
}

func counters(t testing.TB) fakeglobus.Counters {
	t.Helper()
	c, err := fake.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func setFault(t testing.TB, f fakeglobus.Fault) {
	t.Helper()
	if err := fake.SetFault(f); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = fake.ClearFaults() })
}
