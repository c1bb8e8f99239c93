package tokenchecker_test

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

var envNames = []string{"TC_CLIENT_ID", "TC_CLIENT_SECRET", "TC_SCOPES", "TC_AUTH_URL", "TC_GROUPS_URL"}

// setEnv makes the TC_ variables exactly vars (the others unset) for the test; t.Setenv
// restores them when it ends.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, name := range envNames {
		t.Setenv(name, "")
		if v, ok := vars[name]; ok {
			t.Setenv(name, v)
		} else {
			os.Unsetenv(name)
		}
	}
}

// fakeEnv is the environment for the fake.
func fakeEnv() map[string]string {
	return map[string]string{
		"TC_CLIENT_ID":     fakeglobus.ClientID,
		"TC_CLIENT_SECRET": fakeglobus.ClientSecret,
		"TC_SCOPES":        " " + fakeglobus.TestScope + "  " + fakeglobus.TransferScope + " ",
		"TC_AUTH_URL":      fake.URL,
		"TC_GROUPS_URL":    fake.URL,
	}
}

func fromEnv(t *testing.T, overrides tokenchecker.Config) *tokenchecker.Checker {
	t.Helper()
	c, err := tokenchecker.FromEnv(overrides)
	if err != nil {
		t.Fatalf("FromEnv: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFromEnvAllFromEnvironment(t *testing.T) {
	setEnv(t, fakeEnv())
	// VerifyCredentials is left at its default: New introspects once with the credentials
	// from the environment.
	c := fromEnv(t, tokenchecker.Config{})
	if got, want := c.ExpectedScopes(), []string{fakeglobus.TestScope, fakeglobus.TransferScope}; !slices.Equal(got, want) {
		t.Fatalf("ExpectedScopes() = %q, want %q (TC_SCOPES split on spaces)", got, want)
	}
	s, err := c.Check(ctx, "tok-valid")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Active || s.Sub != fakeglobus.AliceID {
		t.Fatalf("unexpected state: %+v", s)
	}
}

func TestFromEnvExplicitWins(t *testing.T) {
	env := fakeEnv()
	env["TC_CLIENT_SECRET"] = "wrong-secret-from-env"
	env["TC_SCOPES"] = "urn:globus:auth:scope:from-env:all"
	env["TC_AUTH_URL"] = "http://127.0.0.1:1" // nothing listens there
	setEnv(t, env)
	c := fromEnv(t, tokenchecker.Config{
		ClientSecret:   fakeglobus.ClientSecret,
		ExpectedScopes: []string{fakeglobus.TestScope},
		AuthURL:        fake.URL,
	})
	if got := c.ExpectedScopes(); !slices.Equal(got, []string{fakeglobus.TestScope}) {
		t.Fatalf("ExpectedScopes() = %q", got)
	}
	// A token no other test has checked (so not cached): introspected at the explicit AuthURL.
	if _, err := c.Check(ctx, newToken(t, nil)); err != nil {
		t.Fatal(err)
	}

	// And the other way round: a wrong explicit secret beats the right one in the environment.
	setEnv(t, fakeEnv())
	_, err := tokenchecker.FromEnv(tokenchecker.Config{ClientSecret: "wrong-explicit-secret"})
	wantCode(t, err, tokenchecker.ErrCredentialsRejected, "wrong-explicit-secret")
}

func TestFromEnvEmptyVariableIgnored(t *testing.T) {
	env := fakeEnv()
	env["TC_CLIENT_ID"] = ""
	setEnv(t, env)
	_, err := tokenchecker.FromEnv(tokenchecker.Config{})
	wantCode(t, err, tokenchecker.ErrInvalidConfig)
	if msg := err.Error(); !strings.Contains(msg, "TC_CLIENT_ID") || strings.Contains(msg, "TC_SCOPES") {
		t.Fatalf("the error should name TC_CLIENT_ID alone: %q", msg)
	}

	// Empty URLs are not passed on (the library would refuse an empty auth_url): the defaults
	// apply. No request is made (no credential probe).
	env = fakeEnv()
	env["TC_AUTH_URL"], env["TC_GROUPS_URL"] = "", ""
	setEnv(t, env)
	fromEnv(t, tokenchecker.Config{VerifyCredentials: tokenchecker.Bool(false)})

	// An empty variable does not hide an explicit value either.
	env["TC_CLIENT_ID"] = ""
	env["TC_AUTH_URL"], env["TC_GROUPS_URL"] = fake.URL, fake.URL
	setEnv(t, env)
	c := fromEnv(t, tokenchecker.Config{ClientID: fakeglobus.ClientID})
	if _, err := c.Check(ctx, "tok-valid"); err != nil {
		t.Fatal(err)
	}
}

func TestFromEnvMissingVariablesNamed(t *testing.T) {
	setEnv(t, nil)
	_, err := tokenchecker.FromEnv(tokenchecker.Config{})
	if !errors.Is(err, tokenchecker.ErrInvalidConfig) {
		t.Fatalf("got %v, want ErrInvalidConfig", err)
	}
	for _, name := range []string{"TC_CLIENT_ID", "TC_CLIENT_SECRET", "TC_SCOPES"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("the error does not name %s: %q", name, err)
		}
	}

	// Only what is missing is named; an explicit value stands in for its variable.
	setEnv(t, map[string]string{"TC_CLIENT_ID": fakeglobus.ClientID, "TC_SCOPES": fakeglobus.TestScope})
	_, err = tokenchecker.FromEnv(tokenchecker.Config{})
	wantCode(t, err, tokenchecker.ErrInvalidConfig)
	if msg := err.Error(); !strings.Contains(msg, "TC_CLIENT_SECRET") ||
		strings.Contains(msg, "TC_CLIENT_ID") || strings.Contains(msg, "TC_SCOPES") {
		t.Fatalf("the error should name TC_CLIENT_SECRET alone: %q", msg)
	}
	// RawJSON is refused (FromEnv builds the document itself).
	_, err = tokenchecker.FromEnv(tokenchecker.Config{RawJSON: "{}"})
	wantCode(t, err, tokenchecker.ErrInvalidConfig)
}

// envTable is the markdown table of the environment variables in a README.
func envTable(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "| variable | configuration |\n")
	if start < 0 {
		t.Fatalf("%s has no table of the environment variables", file)
	}
	var lines []string
	for _, line := range strings.Split(text[start:], "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n")
}

func TestFromEnvDocumentedList(t *testing.T) {
	ours := envTable(t, "README.md")
	if python := envTable(t, "../python/README.md"); ours != python {
		t.Fatalf("README.md's table of the environment variables differs from Python's:\n%s\n---\n%s", ours, python)
	}
	for _, name := range envNames {
		if !strings.Contains(ours, "`"+name+"`") {
			t.Errorf("README.md's table lacks %s", name)
		}
	}
}
