package tokenchecker

import (
	"os"
	"strings"
)

// FromEnv creates a checker configured from the environment, as the CLI is:
//
//	TC_CLIENT_ID      ClientID (required)
//	TC_CLIENT_SECRET  ClientSecret (required)
//	TC_SCOPES         ExpectedScopes, space-separated (required)
//	TC_AUTH_URL       AuthURL
//	TC_GROUPS_URL     GroupsURL
//
// An empty variable counts as unset. Fields set in overrides (any Config field: ClientID,
// ExpectedScopes, AuthURL, VerifyCredentials, …) win over the environment; a zero value means
// "not given" (an empty ExpectedScopes too). When a required value is neither in overrides nor
// in the environment, FromEnv fails with ErrInvalidConfig naming the missing variables.
// overrides.RawJSON must be empty (use New for a whole document). Otherwise FromEnv is New.
func FromEnv(overrides Config) (*Checker, error) {
	if overrides.RawJSON != "" {
		return nil, &Error{Code: StatusInvalidConfig,
			Message: "FromEnv does not take Config.RawJSON; use New for a whole configuration document"}
	}
	cfg := overrides
	env := func(name string) (string, bool) {
		v := os.Getenv(name)
		return v, v != ""
	}
	var missing, fields []string
	need := func(set bool, name, field string) {
		if !set {
			missing = append(missing, name)
			fields = append(fields, field)
		}
	}
	if cfg.ClientID == "" {
		cfg.ClientID, _ = env("TC_CLIENT_ID")
	}
	need(cfg.ClientID != "", "TC_CLIENT_ID", "Config.ClientID")
	if cfg.ClientSecret == "" {
		cfg.ClientSecret, _ = env("TC_CLIENT_SECRET")
	}
	need(cfg.ClientSecret != "", "TC_CLIENT_SECRET", "Config.ClientSecret")
	scopesSet := len(cfg.ExpectedScopes) > 0
	if !scopesSet {
		if v, ok := env("TC_SCOPES"); ok {
			// A variable of only spaces is set (as in Python): the library then refuses the
			// empty expected_scopes.
			cfg.ExpectedScopes, scopesSet = strings.Fields(v), true
		}
	}
	need(scopesSet, "TC_SCOPES", "Config.ExpectedScopes")
	if len(missing) > 0 {
		return nil, &Error{Code: StatusInvalidConfig, Message: "set " + strings.Join(missing, ", ") +
			" in the environment (or " + strings.Join(fields, ", ") + ")"}
	}
	if cfg.AuthURL == "" {
		cfg.AuthURL, _ = env("TC_AUTH_URL")
	}
	if cfg.GroupsURL == "" {
		cfg.GroupsURL, _ = env("TC_GROUPS_URL")
	}
	return New(cfg)
}
