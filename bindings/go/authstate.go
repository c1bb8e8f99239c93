package tokenchecker

import (
	"encoding/json"
	"slices"
	"time"
)

// AuthState is what a successful check learned about the caller.
//
// States are shared and read-only: every Check of a cached answer returns the same *AuthState
// (the memo's, built once per answer, memo.go), every authorization of it that one principal
// matched the same one too, and their slices and strings are shared by every caller. Never
// modify a state or its slices; copy what you need to change (slices.Clone).
//
// What differs from call to call is not in it: CheckInfo and AuthorizePolicy return it as a
// CallInfo (where the answer came from, how old it is).
type AuthState struct {
	Active            bool     // always true for a successful check
	Sub               string   // the identity id the token was issued to
	EffectiveIdentity string   // "urn:globus:auth:identity:<Sub>"
	Identities        []string // every linked identity id
	Username          string
	Name              string
	Email             string
	ClientID          string   // the client the token was issued to
	Scopes            []string // the token's scopes
	Audience          []string
	Expiry            time.Time // zero when the answer had none
	NotBefore         time.Time
	IssuedAt          time.Time

	// Groups are the ids of the groups the caller is an active member of, with
	// fetch_groups "eager" only (Check and Authorize then take the library's result document,
	// which has them); nil otherwise, GroupsStatus "not_fetched". An authorization that
	// needed the groups says which one matched in Matched.
	Groups          []string
	GroupsAvailable bool
	GroupsStatus    string // "not_fetched", "available" or "unavailable"
	GroupsError     string // why, when GroupsStatus is "unavailable"

	// Principals are the caller's identity principals, then its group principals (eager).
	Principals []string

	// Deprecated: CacheSource and CacheAge are always empty: a state is shared by every call
	// of its answer. CallInfo (CheckInfo, AuthorizePolicy) has them.
	CacheSource string
	CacheAge    time.Duration

	// Matched is the allowed principal that authorized the caller (Authorize,
	// AuthorizePolicy); "" for a check.
	Matched string
}

// CallInfo is what one call adds to the caller's (shared) AuthState.
type CallInfo struct {
	// CacheSource is where the answer came from: one of LibraryInfo().Sources — "network",
	// "coalesced" (another caller's request), "memory", "near", "redis", "memcached" or
	// "stale" (a recent answer served past its cache lifetime while Globus Auth is
	// unavailable: Config.StaleIfErrorS).
	CacheSource string
	CacheAge    time.Duration // age of the cached answer
	// Matched is the allowed principal that authorized the caller (AuthorizePolicy: the
	// policy's own string, the same for every call, as in the state), "" for a check.
	Matched string
}

// IdentityPrincipal is the principal of an identity id: "urn:globus:auth:identity:<id>".
func IdentityPrincipal(id string) string { return identityPrefix + id }

// GroupPrincipal is the principal of a group id: "urn:globus:groups:id:<id>", for
// NewPolicy's and Authorize's allowed principals.
func GroupPrincipal(id string) string { return groupPrefix + id }

// wireState is the library's result document (every key tagged: exact matches decode faster).
type wireState struct {
	Active            bool     `json:"active"`
	Sub               string   `json:"sub"`
	EffectiveIdentity string   `json:"effective_identity"`
	Identities        []string `json:"identities"`
	Username          string   `json:"username"`
	Name              string   `json:"name"`
	Email             string   `json:"email"`
	ClientID          string   `json:"client_id"`
	Scopes            []string `json:"scopes"`
	Aud               []string `json:"aud"`
	Exp               *int64   `json:"exp"`
	Nbf               *int64   `json:"nbf"`
	Iat               *int64   `json:"iat"`
	Groups            []string `json:"groups"`
	GroupsStatus      string   `json:"groups_status"`
	GroupsError       string   `json:"groups_error"`
	Principals        []string `json:"principals"`
	Cache             struct {
		Source string `json:"source"`
		AgeMS  int64  `json:"age_ms"`
	} `json:"cache"`
	Authorization struct{ Matched string } `json:"authorization"`
}

// stateResult is the Go result of a call's document (C memory, maybe: nothing refers to it).
func stateResult(status Status, doc []byte) (*AuthState, error) {
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	var w wireState
	if err := json.Unmarshal(doc, &w); err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's result document did not decode: " + err.Error()}
	}
	return newState(&w), nil
}

// newState is the AuthState of a decoded result document; it shares w's slices.
func newState(w *wireState) *AuthState {
	unix := func(p *int64) time.Time {
		if p == nil {
			return time.Time{}
		}
		return time.Unix(*p, 0)
	}
	return &AuthState{Active: w.Active, Sub: w.Sub, EffectiveIdentity: w.EffectiveIdentity,
		Identities: w.Identities, Username: w.Username, Name: w.Name, Email: w.Email,
		ClientID: w.ClientID, Scopes: w.Scopes, Audience: w.Aud,
		Expiry: unix(w.Exp), NotBefore: unix(w.Nbf), IssuedAt: unix(w.Iat),
		Groups: w.Groups, GroupsAvailable: w.GroupsStatus == "available",
		GroupsStatus: w.GroupsStatus, GroupsError: w.GroupsError, Principals: w.Principals,
		CacheSource: w.Cache.Source, CacheAge: time.Duration(w.Cache.AgeMS) * time.Millisecond,
		Matched: w.Authorization.Matched}
}

// HasPrincipal reports whether p is one of the caller's principals.
func (s *AuthState) HasPrincipal(p string) bool { return slices.Contains(s.Principals, p) }

// DependentToken is a token for another service, to call it on the caller's behalf. It holds
// a secret: String and GoString leave AccessToken out, so logging the struct is safe.
type DependentToken struct {
	AccessToken    string
	Scope          string
	ResourceServer string
	TokenType      string
	ExpiresAt      time.Time
	ExpiresIn      time.Duration // at the time of the call
}

// String describes the token without its secret.
func (t DependentToken) String() string {
	return "tokenchecker.DependentToken{Scope: " + t.Scope + ", ResourceServer: " + t.ResourceServer +
		", TokenType: " + t.TokenType + ", ExpiresAt: " + t.ExpiresAt.UTC().Format(time.RFC3339) +
		", AccessToken: <redacted>}"
}

// GoString keeps %#v from printing the access token.
func (t DependentToken) GoString() string { return t.String() }

func dependentResult(status Status, doc []byte) (*DependentToken, error) {
	if status != StatusOK {
		return nil, errorFromDoc(status, doc)
	}
	var w struct {
		AccessToken    string `json:"access_token"`
		Scope          string
		ResourceServer string `json:"resource_server"`
		TokenType      string `json:"token_type"`
		ExpiresAt      int64  `json:"expires_at"`
		ExpiresIn      int64  `json:"expires_in"`
	}
	err := json.Unmarshal(doc, &w)
	clear(doc) // the document holds the access token: don't leave a copy lying around
	if err != nil {
		return nil, &Error{Code: StatusPanic, Message: "the library's dependent-token document did not decode: " + err.Error()}
	}
	return &DependentToken{AccessToken: w.AccessToken, Scope: w.Scope, ResourceServer: w.ResourceServer,
		TokenType: w.TokenType, ExpiresAt: time.Unix(w.ExpiresAt, 0),
		ExpiresIn: time.Duration(w.ExpiresIn) * time.Second}, nil
}
