package codec

import "github.com/clinicsync/clinicsync/codec/schema"

// DefaultValue is the value WatermelonDB gives a column a record was
// created without (its sanitizedRaw rule): null when the column is
// optional; otherwise false for a bool, 0 for a number or timestamp, and
// the empty string for every column a device keeps as a string (string,
// date, decimal and JSON text). A push from an app on an older, smaller
// schema creates rows with these values for the columns it lacks.
// Each is a value its column keeps as it is (see normalize.go).
func DefaultValue(col schema.Column) Value {
	if col.Optional {
		return Null()
	}
	switch col.Type {
	case schema.Bool:
		return Bool(false)
	case schema.Number, schema.Timestamp:
		return Int(0)
	}
	return String("") // string, JSON text, date and decimal columns alike
}

// IsDefault reports whether v is col's DefaultValue.
func IsDefault(col schema.Column, v Value) bool { return v.Equal(DefaultValue(col)) }
