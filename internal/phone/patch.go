package phone

// Patch is an update as the client sent it: a nil field is absent and
// stays as stored. Area code and extension may also be cleared (JSON null);
// the other fields cannot be null.
type Patch struct {
	Draft
	ClearAreaCode  bool
	ClearExtension bool
}

// Empty reports whether the patch names no field.
func (p Patch) Empty() bool {
	d := p.Draft
	return d.Number == nil && d.Type == nil && d.Active == nil && d.AreaCode == nil &&
		d.CountryCode == nil && d.Extension == nil && !p.ClearAreaCode && !p.ClearExtension
}

// Validate returns the first rule the patch breaks, in schema order, as a
// *FieldError, or nil. The rules of each field are those of a create.
func (p Patch) Validate() error {
	if p.Number != nil {
		if err := checkNumber(*p.Number); err != nil {
			return err
		}
	}
	return p.checkOptional()
}

// Apply returns cur with the patch's fields set, and whether anything
// differs from cur. number and extension compare as sent, so a reformatted
// number is a change even when its duplicate key is not.
func (p Patch) Apply(cur Phone) (Phone, bool) {
	next := cur
	if p.Number != nil {
		next.Number = *p.Number
	}
	if p.Type != nil {
		next.Type = Type(*p.Type)
	}
	if p.Active != nil {
		next.Active = *p.Active
	}
	switch {
	case p.ClearAreaCode:
		next.AreaCode = nil
	case p.AreaCode != nil:
		a := int32(*p.AreaCode)
		next.AreaCode = &a
	}
	if p.CountryCode != nil {
		next.CountryCode = int32(*p.CountryCode)
	}
	switch {
	case p.ClearExtension:
		next.Extension = nil
	case p.Extension != nil:
		e := *p.Extension
		next.Extension = &e
	}
	return next, !sameState(cur, next)
}

// sameState compares what a client can change.
func sameState(a, b Phone) bool {
	return a.Number == b.Number && a.Type == b.Type && a.Active == b.Active &&
		equalPtr(a.AreaCode, b.AreaCode) && a.CountryCode == b.CountryCode &&
		equalPtr(a.Extension, b.Extension)
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
