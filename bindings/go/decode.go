package tokenchecker

import (
	"encoding/json"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A decoder specialised for the library's result document, several times faster than
// encoding/json (which dominated the cost of a cached Check before the result memo of
// memo.go). It accepts a subset of JSON and gives up on anything unusual (a number with a
// fraction, a lone surrogate escape, a key that differs from a known one only by case, …);
// decodeState then falls back to encoding/json, so the result is always what encoding/json
// would give (FuzzDecodeState checks that).

func decodeState(doc []byte, w *wireState) error {
	if fastDecodeState(string(doc), w) {
		return nil
	}
	*w = wireState{}
	return json.Unmarshal(doc, w)
}

// scanner reads a document held in one string: the strings it returns without escapes are
// substrings of it, so a whole result costs one allocation for its text.
type scanner struct {
	b  string
	i  int
	ok bool
}

func (s *scanner) fail() bool { s.ok = false; return false }

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) lit(word string) bool {
	if strings.HasPrefix(s.b[s.i:], word) {
		s.i += len(word)
		return true
	}
	return s.fail()
}

// null consumes a null if there is one.
func (s *scanner) null() bool {
	if s.peek() == 'n' {
		return s.lit("null")
	}
	return false
}

// plain marks the bytes a JSON string holds as they are: not '"', '\\' or a control character.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// rawString returns the text of a string as it is in the document, and whether it holds
// escapes.
func (s *scanner) rawString() (raw string, esc bool) {
	if s.peek() != '"' {
		s.fail()
		return "", false
	}
	b := s.b
	start := s.i + 1
	var high byte // OR of every byte: bit 7 set when the string is not ASCII
	for i := start; i < len(b); {
		c := b[i]
		if plain[c] {
			high |= c
			i++
			continue
		}
		switch c {
		case '"':
			raw = b[start:i]
			s.i = i + 1
			if high >= 0x80 && !utf8.ValidString(raw) {
				s.fail() // encoding/json would substitute U+FFFD
			}
			return raw, esc
		case '\\':
			esc = true
			i += 2
		default: // a control character
			s.fail()
			return "", false
		}
	}
	s.fail()
	return "", false
}

func (s *scanner) str() string {
	raw, esc := s.rawString()
	if !s.ok {
		return ""
	}
	if !esc {
		return raw
	}
	out, ok := unescape(raw)
	if !ok {
		s.fail()
	}
	return out
}

// unescape decodes JSON escapes; false for what encoding/json would alter (lone surrogates).
func unescape(raw string) (string, bool) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		i++
		if i >= len(raw) {
			return "", false
		}
		switch raw[i] {
		case '"', '\\', '/':
			out = append(out, raw[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(raw[i+1:])
			if !ok {
				return "", false
			}
			i += 4
			if utf16.IsSurrogate(r) {
				if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
					return "", false
				}
				r2, ok := hex4(raw[i+3:])
				if !ok {
					return "", false
				}
				r = utf16.DecodeRune(r, r2)
				if r == utf8.RuneError {
					return "", false
				}
				i += 6
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", false
		}
	}
	return string(out), true
}

func hex4(b string) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range []byte(b[:4]) {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// strList decodes null (nil) or an array of strings.
func (s *scanner) strList() []string {
	if s.null() || !s.ok {
		return nil
	}
	if s.peek() != '[' {
		s.fail()
		return nil
	}
	s.i++
	out := []string{}
	if s.peek() == ']' {
		s.i++
		return out
	}
	for s.ok {
		out = append(out, s.str())
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return out
		default:
			s.fail()
		}
	}
	return nil
}

// integer decodes an integer without fraction or exponent (others: give up).
func (s *scanner) integer() int64 {
	s.ws()
	neg := false
	if s.i < len(s.b) && s.b[s.i] == '-' {
		neg = true
		s.i++
	}
	start := s.i
	var n uint64
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		if n > (1<<63-1)/10 {
			s.fail()
			return 0
		}
		n = n*10 + uint64(s.b[s.i]-'0')
		s.i++
	}
	digits := s.i - start
	if digits == 0 || (digits > 1 && s.b[start] == '0') || n > 1<<63-1 {
		s.fail()
		return 0
	}
	if s.i < len(s.b) {
		switch s.b[s.i] {
		case '.', 'e', 'E':
			s.fail()
			return 0
		}
	}
	if neg {
		return -int64(n)
	}
	return int64(n)
}

func (s *scanner) intPtr() *int64 {
	if s.null() || !s.ok {
		return nil
	}
	n := s.integer()
	return &n
}

func (s *scanner) boolean() bool {
	switch s.peek() {
	case 't':
		return s.lit("true")
	case 'f':
		s.lit("false")
		return false
	}
	s.fail()
	return false
}

// openObject consumes the '{' of an object; then read its members with nextKey, each
// followed by the decoding of its value:
//
//	for first := true; ; first = false { key, ok := s.nextKey(first); if !ok { break }; … }
func (s *scanner) openObject() bool {
	if s.peek() != '{' {
		return s.fail()
	}
	s.i++
	return true
}

// nextKey returns the next member's key, consuming the ':' after it; false at the end of the
// object (or on an error: check s.ok).
func (s *scanner) nextKey(first bool) (string, bool) {
	if !s.ok {
		return "", false
	}
	switch s.peek() {
	case '}':
		s.i++
		return "", false
	case ',':
		if first {
			return "", s.fail()
		}
		s.i++
	default:
		if !first {
			return "", s.fail()
		}
	}
	key, esc := s.rawString()
	if esc || !s.ok || s.peek() != ':' {
		return "", s.fail()
	}
	s.i++
	return key, true
}

// unknown skips the value of a key the binding doesn't know; it gives up when encoding/json
// would match the key to a field anyway (its matching ignores case).
func (s *scanner) unknown(key string, known ...string) {
	for _, k := range known {
		if strings.EqualFold(key, k) {
			s.fail()
			return
		}
	}
	s.skip(0)
}

func (s *scanner) skip(depth int) {
	if depth > 100 {
		s.fail()
		return
	}
	switch s.peek() {
	case '{':
		if s.openObject() {
			for first := true; ; first = false {
				if _, ok := s.nextKey(first); !ok {
					break
				}
				s.skip(depth + 1)
			}
		}
	case '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			return
		}
		for s.ok {
			s.skip(depth + 1)
			switch s.peek() {
			case ',':
				s.i++
			case ']':
				s.i++
				return
			default:
				s.fail()
			}
		}
	case '"':
		// encoding/json rejects a string with an invalid escape anywhere.
		if raw, esc := s.rawString(); esc && s.ok {
			if _, ok := unescape(raw); !ok {
				s.fail()
			}
		}
	case 't':
		s.lit("true")
	case 'f':
		s.lit("false")
	case 'n':
		s.lit("null")
	default:
		s.number()
	}
}

// number validates any JSON number.
func (s *scanner) number() {
	b, i := s.b, s.i
	digits := func() int {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	start := i
	if n := digits(); n == 0 || (n > 1 && b[start] == '0') {
		s.fail()
		return
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			s.fail()
			return
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			s.fail()
			return
		}
	}
	s.i = i
}

var stateKeys = []string{"active", "sub", "effective_identity", "identities", "username", "name",
	"email", "client_id", "scopes", "aud", "exp", "nbf", "iat", "groups", "groups_status",
	"groups_error", "principals", "cache", "authorization"}

// strField decodes a string field; null leaves it as it was, as encoding/json does.
func (s *scanner) strField(p *string) {
	if !s.null() && s.ok {
		*p = s.str()
	}
}

func fastDecodeState(doc string, w *wireState) bool {
	_, _, ok := fastDecodeStateAge(doc, w)
	return ok
}

// fastDecodeStateAge is fastDecodeState that also says where the digits of the value that
// set cache.age_ms are in doc (doc[start:end]; 0, 0 when none did): the result memo (memo.go)
// keys a document by everything else.
func fastDecodeStateAge(doc string, w *wireState) (ageStart, ageEnd int, ok bool) {
	s := scanner{b: doc, ok: true}
	if !s.openObject() {
		return 0, 0, false
	}
	for first := true; ; first = false {
		key, ok := s.nextKey(first)
		if !ok {
			break
		}
		switch key {
		case "active":
			if !s.null() && s.ok {
				w.Active = s.boolean()
			}
		case "sub":
			s.strField(&w.Sub)
		case "effective_identity":
			s.strField(&w.EffectiveIdentity)
		case "identities":
			w.Identities = s.strList()
		case "username":
			s.strField(&w.Username)
		case "name":
			s.strField(&w.Name)
		case "email":
			s.strField(&w.Email)
		case "client_id":
			s.strField(&w.ClientID)
		case "scopes":
			w.Scopes = s.strList()
		case "aud":
			w.Aud = s.strList()
		case "exp":
			w.Exp = s.intPtr()
		case "nbf":
			w.Nbf = s.intPtr()
		case "iat":
			w.Iat = s.intPtr()
		case "groups":
			w.Groups = s.strList()
		case "groups_status":
			s.strField(&w.GroupsStatus)
		case "groups_error":
			s.strField(&w.GroupsError)
		case "principals":
			w.Principals = s.strList()
		case "cache":
			if s.null() || !s.ok || !s.openObject() {
				continue
			}
			for first := true; ; first = false {
				key, ok := s.nextKey(first)
				if !ok {
					break
				}
				switch key {
				case "source":
					s.strField(&w.Cache.Source)
				case "age_ms":
					if !s.null() && s.ok {
						start := s.i
						w.Cache.AgeMS = s.integer()
						ageStart, ageEnd = start, s.i
					}
				default:
					s.unknown(key, "source", "age_ms")
				}
			}
		case "authorization":
			if s.null() || !s.ok {
				w.Authorization = nil
				continue
			}
			if !s.openObject() {
				continue
			}
			if w.Authorization == nil {
				w.Authorization = new(wireAuthorization)
			}
			a := w.Authorization
			for first := true; ; first = false {
				key, ok := s.nextKey(first)
				if !ok {
					break
				}
				switch key {
				case "authorized":
					if !s.null() && s.ok {
						a.Authorized = s.boolean()
					}
				case "matched":
					s.strField(&a.Matched)
				default:
					s.unknown(key, "authorized", "matched")
				}
			}
		default:
			s.unknown(key, stateKeys...)
		}
	}
	s.ws()
	return ageStart, ageEnd, s.ok && s.i == len(s.b)
}
