package tokenchecker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	tokenchecker "github.com/tokenchecker/tokenchecker/bindings/go"
	"github.com/tokenchecker/tokenchecker/bindings/go/internal/fakeglobus"
)

// TestNULRefused: every entry point that passes a token, a scope or an identity id to C refuses
// one holding a NUL byte with ErrInvalidArgument (as an empty token), before C, which would see
// the string cut at the NUL. Each value's part before the NUL is valid, so a truncated call
// would succeed (when that part is cached) or reach the fake (when it is not): both fail here.
func TestNULRefused(t *testing.T) {
	lazy := newChecker(t)
	eager := newChecker(t, func(cfg *tokenchecker.Config) { cfg.FetchGroups = "eager" })
	tok := newToken(t, nil)
	bad := tok + "\x00junk"
	group := "urn:globus:groups:id:" + fakeglobus.GroupMember
	member := []string{group} // Alice's group: the groups would be fetched
	calls := map[string]func() error{
		"Check": func() error {
			_, err := lazy.Check(ctx, bad)
			return err
		},
		"Check (eager)": func() error {
			_, err := eager.Check(ctx, bad)
			return err
		},
		"Authorize": func() error {
			_, err := lazy.Authorize(ctx, bad, member, tokenchecker.AuthorizeOptions{})
			return err
		},
		"Authorize (public)": func() error {
			_, err := eager.Authorize(ctx, bad, []string{"public"}, tokenchecker.AuthorizeOptions{AllowPublic: true})
			return err
		},
		"DependentToken (token)": func() error {
			_, err := lazy.DependentToken(ctx, bad, fakeglobus.TransferScope)
			return err
		},
		"DependentToken (scope)": func() error {
			_, err := lazy.DependentToken(ctx, tok, fakeglobus.TransferScope+"\x00junk")
			return err
		},
		"DependentToken (resource server)": func() error {
			_, err := lazy.DependentToken(ctx, tok, "transfer.api.globus.org\x00")
			return err
		},
		"Purge":                     func() error { return lazy.Purge(bad) },
		"PurgeIdentity (id)":        func() error { return lazy.PurgeIdentity(fakeglobus.AliceID + "\x00junk") },
		"PurgeIdentity (principal)": func() error { return lazy.PurgeIdentity("urn:globus:auth:identity:" + fakeglobus.AliceID + "\x00") },
	}
	// Even a done context: the refusal comes first, as for an empty token.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	calls["Check (done context)"] = func() error {
		_, err := lazy.Check(done, bad)
		return err
	}

	// The middleware: the header's token never reaches Check (BearerToken refuses it), with
	// the contract's 400 invalid_request; nor with RequirePrincipals.
	handlers := map[string]http.Handler{
		"Middleware":        lazy.Middleware(whoami),
		"RequirePrincipals": lazy.MiddlewareWith(tokenchecker.RequirePrincipals(tokenchecker.AuthorizeOptions{}, group))(whoami),
	}

	refusedAll := func(t *testing.T) {
		for name, call := range calls {
			t.Run(name, func(t *testing.T) { wantCode(t, call(), tokenchecker.ErrInvalidArgument, tok) })
		}
		for name, h := range handlers {
			t.Run(name, func(t *testing.T) {
				r := httptest.NewRequest(http.MethodGet, "/", nil)
				r.Header.Set("Authorization", "Bearer "+bad)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				var body map[string]map[string]string
				_ = json.Unmarshal(w.Body.Bytes(), &body)
				if w.Code != http.StatusBadRequest || body["error"]["code"] != "TC_INVALID_ARGUMENT" ||
					w.Header().Get("WWW-Authenticate") != invalidRequest {
					t.Fatalf("%d %q %s", w.Code, w.Header().Get("WWW-Authenticate"), w.Body.Bytes())
				}
			})
		}
	}

	// Nothing cached for tok: a truncated call would have checked tok, and cached it.
	t.Run("uncached", refusedAll)
	if s, info, err := eager.CheckInfo(ctx, tok); err != nil || info.CacheSource != "network" {
		t.Fatalf("the first check of the token: %+v, %v (want it from the network)", s, err)
	}

	// tok's check, groups and dependent token cached (in the process-wide cache): a truncated
	// call would have succeeded, and a truncated purge would have dropped them.
	if _, err := lazy.Authorize(ctx, tok, member, tokenchecker.AuthorizeOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := lazy.DependentToken(ctx, tok, fakeglobus.TransferScope); err != nil {
		t.Fatal(err)
	}
	t.Run("cached", refusedAll)
	if s, info, err := lazy.CheckInfo(ctx, tok); err != nil || info.CacheSource != "memory" {
		t.Fatalf("after the refused purges: %+v, %v (want it still cached)", s, err)
	}
}
