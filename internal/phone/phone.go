// Package phone is the domain of phonesd: a phone linked to an account, the
// rules a new phone must satisfy, the duplicate rule and the audit events.
// It knows neither HTTP nor SQL.
package phone

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/phonesd/phonesd/internal/printable"
)

// Type is the kind of a phone line.
type Type string

// The phone types the contract allows.
const (
	Residential Type = "RESIDENTIAL"
	Commercial  Type = "COMMERCIAL"
	Mobile      Type = "MOBILE"
)

// Types lists the phone types, in the order the contract lists them.
var Types = [...]Type{Residential, Commercial, Mobile}

// ParseType returns the phone type t names, or a *FieldError naming type
// when it names none.
func ParseType(t string) (Type, error) {
	for _, v := range Types {
		if Type(t) == v {
			return v, nil
		}
	}
	names := make([]string, len(Types))
	for i, v := range Types {
		names[i] = string(v)
	}
	return "", &FieldError{"type", "type must be one of " + strings.Join(names, ", ")}
}

// DefaultCountryCode is the country code a phone gets when none is sent (Brazil).
const DefaultCountryCode = 55

// Contract bounds.
const (
	MaxNumberLen    = 15
	MaxExtensionLen = 10
	MaxAreaCode     = math.MaxInt32
	MaxCountryCode  = 99999
)

// OutOfRange is the *FieldError of area_code or country_code holding a
// value outside its range, whoever finds it: the domain, or a decoder
// meeting a number too large to hold.
func OutOfRange(field string) *FieldError {
	limit := int64(MaxCountryCode)
	if field == "area_code" {
		limit = MaxAreaCode
	}
	return &FieldError{field, field + " must be an integer from 0 to " + strconv.FormatInt(limit, 10)}
}

// Phone is a phone number linked to an account of a tenant, as stored and
// read back: the read model. A phone not yet stored is a Candidate.
type Phone struct {
	ID          int64
	Tenant      string
	AccountID   int64
	CustomerID  *int64
	Number      string // exactly as sent
	Type        Type
	Active      bool
	AreaCode    *int32
	CountryCode int32
	Extension   *string // exactly as sent
	CreatedAt   time.Time
	UpdatedAt   time.Time
	// Version counts the phone's changes from 1; it is the phone's ETag.
	Version int64
}

// Errors a Store returns for the cases the API answers with their own status.
var (
	// ErrDuplicate means the account already has an active phone with the same duplicate key.
	ErrDuplicate = errors.New("phone number already exists")
	// ErrNotFound means no phone has that id in that account of that tenant.
	ErrNotFound = errors.New("phone not found")
	// ErrPrecondition means the phone changed since the version the client
	// named in If-Match.
	ErrPrecondition = errors.New("phone version does not match")
)

// FieldError is a request that breaks the contract, naming the offending field
// by its JSON name: the shape of the contract's BadRequestError.
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Fields lists the request body fields in the order of the contract's schema,
// which is the order in which their errors are reported.
var Fields = [...]string{"number", "type", "active", "area_code", "country_code", "extension"}

// FieldRank returns the position of a body field in Fields, or len(Fields) for
// any other name.
func FieldRank(field string) int {
	for i, f := range Fields {
		if f == field {
			return i
		}
	}
	return len(Fields)
}

// Draft is a create request as the client sent it: nil means absent. Integers
// are kept wide so that out-of-range values can be reported, not wrapped.
type Draft struct {
	Number      *string
	Type        *string
	Active      *bool
	AreaCode    *int64
	CountryCode *int64
	Extension   *string
}

// Validate returns the first rule the draft breaks, in schema order, as a
// *FieldError, or nil.
func (d Draft) Validate() error {
	if d.Number == nil {
		return &FieldError{"number", "number is required"}
	}
	if err := checkNumber(*d.Number); err != nil {
		return err
	}
	if d.Type == nil {
		return &FieldError{"type", "type is required"}
	}
	return d.checkOptional()
}

// checkOptional checks, in schema order, the fields that a create may omit
// and an update may send alone; number is checked by the caller.
func (d Draft) checkOptional() error {
	if d.Type != nil {
		if _, err := ParseType(*d.Type); err != nil {
			return err
		}
	}
	if d.AreaCode != nil && (*d.AreaCode < 0 || *d.AreaCode > MaxAreaCode) {
		return OutOfRange("area_code")
	}
	if d.CountryCode != nil && (*d.CountryCode < 0 || *d.CountryCode > MaxCountryCode) {
		return OutOfRange("country_code")
	}
	if d.Extension != nil {
		if utf8.RuneCountInString(*d.Extension) > MaxExtensionLen {
			return &FieldError{"extension", "extension must be at most " + strconv.Itoa(MaxExtensionLen) + " characters"}
		}
		// PostgreSQL text cannot hold NUL, and no extension needs a control
		// character: refusing them keeps both backends alike.
		if strings.ContainsFunc(*d.Extension, unicode.IsControl) {
			return &FieldError{"extension", "extension must not contain control characters"}
		}
		if strings.ContainsFunc(*d.Extension, printable.Invisible) {
			return &FieldError{"extension", "extension must not contain invisible formatting characters"}
		}
	}
	return nil
}

// checkNumber enforces maxLength 15 (code points) and the pattern
// ^\+?[0-9 ().-]*[0-9][0-9 ().-]*$ without a regexp: this runs on every request.
func checkNumber(n string) error {
	if utf8.RuneCountInString(n) > MaxNumberLen {
		return &FieldError{"number", "number must be at most " + strconv.Itoa(MaxNumberLen) + " characters"}
	}
	digits := 0
	for i := 0; i < len(n); i++ {
		switch c := n[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == ' ' || c == '(' || c == ')' || c == '.' || c == '-':
		case c == '+' && i == 0:
		default:
			return &FieldError{"number", "number may contain only digits, spaces, parentheses, dots, hyphens and a leading +"}
		}
	}
	if digits == 0 {
		return &FieldError{"number", "number must contain at least one digit"}
	}
	return nil
}

// Candidate is a new phone, not yet stored, as New made it from a valid
// draft: the only form in which Service.Create takes a phone to create,
// and a Store, through Creation, a phone to insert.
//
// Its phone is unexported so that the compiler, not a comment, keeps the
// rule that what is created was validated: code that builds a phone
// itself, skipping New, does not compile when it hands it over. Phone
// itself stays a plain read model, with exported fields, since stores
// scan rows into it and the transport reads it; only the inputs of the
// service's writes, a Candidate and a ValidPatch, are guarded. The zero
// Candidate is the one value New did not make, and Creation.Write refuses
// it.
type Candidate struct {
	p Phone
}

// Phone returns the candidate's phone, to read: the defaults applied, no
// id, times or version yet.
func (c Candidate) Phone() Phone {
	return c.p.clone()
}

// New applies the defaults to a valid draft and returns the phone it
// describes, to create. It returns the draft's *FieldError when the draft
// is invalid. The candidate keeps copies of what d and customer point to,
// so that nothing the caller changes afterwards reaches it unchecked.
func New(tenant string, account int64, customer *int64, d Draft) (Candidate, error) {
	if err := d.Validate(); err != nil {
		return Candidate{}, err
	}
	p := Phone{
		Tenant:      tenant,
		AccountID:   account,
		CustomerID:  clonePtr(customer),
		Number:      *d.Number,
		Type:        Type(*d.Type),
		Active:      true,
		CountryCode: DefaultCountryCode,
		Extension:   clonePtr(d.Extension),
	}
	if d.Active != nil {
		p.Active = *d.Active
	}
	if d.AreaCode != nil {
		a := int32(*d.AreaCode)
		p.AreaCode = &a
	}
	if d.CountryCode != nil {
		p.CountryCode = int32(*d.CountryCode)
	}
	return Candidate{p: p}, nil
}

// clone returns p with its own copies of what its fields point to.
func (p Phone) clone() Phone {
	p.CustomerID, p.AreaCode, p.Extension = clonePtr(p.CustomerID), clonePtr(p.AreaCode), clonePtr(p.Extension)
	return p
}

// clonePtr returns a pointer to a copy of *v, or nil for nil.
func clonePtr[T any](v *T) *T {
	if v == nil {
		return nil
	}
	c := *v
	return &c
}

// DuplicateKey is the value two active phones of one account may not share:
// the country code, the area code ("-" when absent, so it differs from 0), the
// ASCII digits of the number, and the extension trimmed and lower-cased (empty
// counts as absent). Type and customer do not count. Every field but the last
// is free of '|', so the key cannot be read two ways.
func (p Phone) DuplicateKey() string {
	var b strings.Builder
	b.Grow(32)
	b.WriteString(strconv.FormatInt(int64(p.CountryCode), 10))
	b.WriteByte('|')
	if p.AreaCode != nil {
		b.WriteString(strconv.FormatInt(int64(*p.AreaCode), 10))
	} else {
		b.WriteByte('-')
	}
	b.WriteByte('|')
	for i := 0; i < len(p.Number); i++ {
		if c := p.Number[i]; c >= '0' && c <= '9' {
			b.WriteByte(c)
		}
	}
	b.WriteByte('|')
	if p.Extension != nil {
		b.WriteString(strings.ToLower(strings.TrimSpace(*p.Extension)))
	}
	return b.String()
}
