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

// ValidPatch is a patch that passed Validate: the only form in which
// Service.Update takes a change. Its patch is unexported for the reason
// Candidate's phone is: an update that skips validation does not compile.
type ValidPatch struct {
	p Patch
}

// Validate returns the patch, checked, or the first rule it breaks, in
// schema order, as a *FieldError. The rules of each field are those of a
// create. The ValidPatch keeps copies of what the patch points to, so
// that nothing the caller changes afterwards reaches it unchecked.
func (p Patch) Validate() (ValidPatch, error) {
	if p.Number != nil {
		if err := checkNumber(*p.Number); err != nil {
			return ValidPatch{}, err
		}
	}
	if err := p.checkOptional(); err != nil {
		return ValidPatch{}, err
	}
	d := &p.Draft
	d.Number, d.Type, d.Active = clonePtr(d.Number), clonePtr(d.Type), clonePtr(d.Active)
	d.AreaCode, d.CountryCode, d.Extension = clonePtr(d.AreaCode), clonePtr(d.CountryCode), clonePtr(d.Extension)
	return ValidPatch{p: p}, nil
}

// apply returns cur with the patch's fields set, and whether anything
// differs from cur. number and extension compare as sent, so a reformatted
// number is a change even when its duplicate key is not.
func (v ValidPatch) apply(cur Phone) (Phone, bool) {
	p := v.p
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
