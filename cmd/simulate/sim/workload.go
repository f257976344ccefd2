package sim

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/clinicsync/clinicsync/actors"
	"github.com/clinicsync/clinicsync/codec"
	"github.com/clinicsync/clinicsync/codec/schema"
)

// Device roles: who does what in a clinic day.
const (
	roleDesk     = "desk"     // registration and appointments
	roleTriage   = "triage"   // visits and vitals
	roleDoctor   = "doctor"   // consultations, problems, prescriptions
	rolePharmacy = "pharmacy" // dispensing
)

// Realistic values for a clinic serving displaced people.
var (
	givenNames = []string{"Amina", "Fatima", "Omar", "Yusuf", "Leila", "Hassan", "Mariam", "Ahmad", "Noor", "Samir",
		"Zainab", "Khalid", "Huda", "Tariq", "Rania", "Ibrahim", "Salma", "Bilal", "Dalia", "Karim", "Aisha", "Mustafa"}
	surnames = []string{"Haddad", "Khalil", "Nasser", "Saleh", "Mansour", "Aziz", "Farah", "Hamdan", "Odeh",
		"Sabbagh", "Barakat", "Darwish", "Qasim", "Shami", "Jaber"}
	hometowns   = []string{"Aleppo", "Homs", "Daraa", "Idlib", "Raqqa", "Mosul", "Hama", "Deir ez-Zor", "Kabul", "Juba"}
	camps       = []string{"Zaatari", "Azraq", "Bekaa", "Kakuma", "Domiz", "Arsal"}
	citizenship = []string{"Syrian", "Iraqi", "Afghan", "South Sudanese", "Jordanian", "Lebanese"}
	complaints  = []string{"cough", "fever", "headache", "back pain", "abdominal pain", "rash", "diarrhoea",
		"follow-up", "shortness of breath", "toothache", "fatigue", "ear pain"}
	problems = [][2]string{
		{"J06.9", "Acute upper respiratory infection"}, {"I10", "Essential hypertension"},
		{"E11.9", "Type 2 diabetes mellitus"}, {"K29.70", "Gastritis"}, {"J45.909", "Asthma"},
		{"N39.0", "Urinary tract infection"}, {"M54.5", "Low back pain"}, {"L30.9", "Dermatitis"},
		{"A09", "Infectious gastroenteritis"}, {"F41.1", "Generalized anxiety disorder"},
		{"D50.9", "Iron deficiency anaemia"}, {"H66.90", "Otitis media"},
	}
	drugs = []struct{ id, generic, brand, form, route, qty, units, price string }{
		{"drug.amoxicillin-500", "Amoxicillin", "Amoxil", "capsule", "oral", "500", "mg", "0.12"},
		{"drug.paracetamol-500", "Paracetamol", "Panadol", "tablet", "oral", "500", "mg", "0.02"},
		{"drug.ibuprofen-400", "Ibuprofen", "Brufen", "tablet", "oral", "400", "mg", "0.04"},
		{"drug.metformin-500", "Metformin", "Glucophage", "tablet", "oral", "500", "mg", "0.05"},
		{"drug.amlodipine-5", "Amlodipine", "Norvasc", "tablet", "oral", "5", "mg", "0.06"},
		{"drug.salbutamol-100", "Salbutamol", "Ventolin", "inhaler", "inhalation", "100", "mcg", "2.50"},
		{"drug.ors-20", "Oral rehydration salts", "", "sachet", "oral", "20.5", "g", "0.15"},
		{"drug.omeprazole-20", "Omeprazole", "Losec", "capsule", "oral", "20", "mg", "0.08"},
		{"drug.ferrous-200", "Ferrous sulfate", "", "tablet", "oral", "200", "mg", "0.03"},
		{"drug.ceftriaxone-1g", "Ceftriaxone", "Rocephin", "injection", "intramuscular", "1", "g", "1.10"},
	}
	roleNames = map[string]string{roleDesk: "registrar", roleTriage: "nurse", roleDoctor: "provider", rolePharmacy: "pharmacist"}
)

func (w *World) pick(list []string) string { return list[w.work.IntN(len(list))] }

// now is a node's local time in ms (what its user would type).
func (n *node) now() codec.Value { return codec.Int(n.clock.ms()) }

// writer is who the model credits with a node's local writes.
// (a WatermelonDB device's user: the cloud dates its edits with the
// user's id).
func (n *node) writer() string {
	if n.wdb != nil {
		return n.user
	}
	return n.name
}

// catalog is the schema every node shares.
func (w *World) catalog() *schema.Catalog { return w.cloud.store.Catalog() }

// get reads a row on n: its store, or a WatermelonDB device's database
// (live records only).
func (w *World) get(n *node, table, id string) (codec.Record, error) {
	if n.wdb != nil {
		return w.wdbGet(n, table, id)
	}
	return n.store.Get(table, id)
}

// showWrites notes, on a WatermelonDB device, the writes it now shows
// in the columns it just wrote.
func (w *World) showWrites(n *node, table, id string, cols map[string]codec.Value) {
	if n.wdb == nil {
		return
	}
	r := w.model.row(key{table, id})
	for c := range cols {
		if ws := r.cols[c]; len(ws) > 0 {
			n.shown[colKey{key{table, id}, c}] = ws[len(ws)-1].id
		}
	}
}

// complete fills the required columns a create left out with neutral
// values, as the app's forms do (empty metadata, not deleted).
func complete(t *schema.Table, cols map[string]codec.Value, now codec.Value) {
	for _, c := range t.Columns {
		if _, set := cols[c.Name]; set || c.Optional || c.Name == "created_at" || c.Name == "updated_at" {
			continue
		}
		switch c.Type {
		case schema.JSON:
			cols[c.Name] = codec.JSONText("{}")
		case schema.Bool:
			cols[c.Name] = codec.Bool(false)
		case schema.Timestamp:
			cols[c.Name] = now
		case schema.Number:
			cols[c.Name] = codec.Int(0)
		case schema.Decimal:
			cols[c.Name] = codec.String("0")
		case schema.Date:
			cols[c.Name] = codec.String("2000-01-01")
		default:
			cols[c.Name] = codec.String("")
		}
	}
}

// create is a local create on n, recorded in the model with the values
// the workload typed (created_at and updated_at too, from n's clock, as
// the app sets them).
func (w *World) create(n *node, table, id string, cols map[string]codec.Value, patient string) bool {
	t, _ := w.catalog().Table(table)
	now := n.now()
	complete(t, cols, now)
	for _, c := range []string{"created_at", "updated_at"} {
		if _, ok := t.Column(c); ok && !has(cols, c) {
			cols[c] = now
		}
	}
	var vers map[string]codec.Version
	if n.wdb != nil {
		n.wdb.create(table, id, raws(cols))
		vers = wdbVersions(n, cols)
	} else {
		rec, err := n.store.Put(table, id, cols)
		if err != nil {
			w.violate(VEngineError, n.name, table+"/"+id, "local create refused: %v", err)
			return false
		}
		vers = rec.Versions
	}
	w.model.created(n.writer(), w.clock.now, table, id, cols, vers, patient, n.clinic)
	w.showWrites(n, table, id, cols)
	w.stats.RowsWritten++
	w.tracef("%s create %s/%s", n.name, table, id)
	return true
}

// update is a local update of some columns on n (and updated_at, from
// n's clock, when the table has it), recorded in the model with the
// values typed and the writes n's replica showed in those columns.
func (w *World) update(n *node, table, id string, cols map[string]codec.Value) bool {
	typed := maps.Clone(cols)
	if t, _ := w.catalog().Table(table); t != nil {
		if _, ok := t.Column("updated_at"); ok && !has(typed, "updated_at") {
			typed["updated_at"] = n.now()
		}
	}
	before := map[string]int{}
	cur, err := w.get(n, table, id)
	r := w.model.row(key{table, id})
	if err == nil && r != nil && n.wdb != nil {
		for c := range typed {
			if id, ok := n.shown[colKey{key{table, id}, c}]; ok {
				before[c] = id
			}
		}
	} else if err == nil && r != nil {
		for c := range typed {
			if v, ok := cur.Cols[c]; ok {
				if wr := r.resolve(c, cur.Versions[c], v); wr != nil {
					before[c] = wr.id
				}
			}
		}
	}
	store := typed
	if w.opts.BreakSecondEdit && err == nil && n != w.cloud && n.wdb == nil {
		// --break-second-edit: a column the device changed and has not
		// pushed yet keeps its first edit; the second one is dropped.
		store = maps.Clone(typed)
		for c := range typed {
			if cur.Status == codec.Created || slices.Contains(cur.Changed, c) {
				delete(store, c)
			}
		}
	}
	vers := map[string]codec.Version{}
	if n.wdb != nil {
		if err := n.wdb.update(table, id, raws(store)); err != nil {
			w.violate(VEngineError, n.name, table+"/"+id, "local update refused: %v", err)
			return false
		}
		vers = wdbVersions(n, store)
	} else if len(store) > 0 {
		rec, err := n.store.Put(table, id, store)
		if err != nil {
			w.violate(VEngineError, n.name, table+"/"+id, "local update refused: %v", err)
			return false
		}
		vers = rec.Versions
	}
	for c := range typed {
		if _, ok := vers[c]; !ok {
			vers[c] = codec.Version{Node: n.name + "(dropped)"}
		}
	}
	w.model.updated(n.writer(), w.clock.now, table, id, typed, vers, before)
	w.showWrites(n, table, id, typed)
	w.stats.RowsWritten++
	w.tracef("%s update %s/%s %s", n.name, table, id, strings.Join(sortedKeys(cols), ","))
	return true
}

func has(cols map[string]codec.Value, c string) bool {
	_, ok := cols[c]
	return ok
}

// remove is a local delete on n, recorded in the model.
func (w *World) remove(n *node, table, id string) bool {
	del := func() error { return n.store.Delete(table, id) }
	if n.wdb != nil {
		del = func() error { return n.wdb.markAsDeleted(table, id) }
	}
	if err := del(); err != nil {
		w.violate(VEngineError, n.name, table+"/"+id, "local delete refused: %v", err)
		return false
	}
	w.model.deletedRow(n.writer(), w.clock.now, table, id)
	if n == w.cloud {
		w.cloudTombs[key{table, id}] = true
	}
	w.stats.RowsWritten++
	w.tracef("%s delete %s/%s", n.name, table, id)
	return true
}

// live reports whether n holds a live copy of a row.
func (w *World) live(n *node, table, id string) bool {
	r, err := w.get(n, table, id)
	return err == nil && !r.Deleted
}

// patient picks a patient of n's clinic that n holds: mostly one of the
// patients registered lately (the day's patients, whom several devices
// work on at once), sometimes anyone.
func (w *World) patient(n *node) (string, bool) {
	ids := w.model.patients[n.clinic]
	for range 4 {
		if len(ids) == 0 {
			return "", false
		}
		i := w.work.IntN(len(ids))
		if w.work.IntN(5) > 0 {
			i = max(0, len(ids)-1-w.work.IntN(12))
		}
		if w.live(n, "patients", ids[i]) {
			return ids[i], true
		}
	}
	return "", false
}

// child picks the newest row of a table belonging to a patient that n
// holds, optionally matching a predicate on the row.
func (w *World) child(n *node, patient, table string, ok func(map[string]codec.Value) bool) (string, bool) {
	kids := w.model.children[patient]
	for i := len(kids) - 1; i >= 0; i-- {
		k := kids[i]
		if k.table != table {
			continue
		}
		r, err := w.get(n, k.table, k.id)
		if err != nil || r.Deleted || ok != nil && !ok(r.Cols) {
			continue
		}
		return k.id, true
	}
	return "", false
}

// visit returns a live visit of the patient on n, checking one in if
// there is none.
func (w *World) visit(n *node, p string) (string, bool) {
	if id, ok := w.child(n, p, "visits", nil); ok {
		return id, true
	}
	return w.checkIn(n, p)
}

func jsonText(v any) codec.Value {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return codec.JSONText(string(b))
}

func (w *World) phone() codec.Value {
	return codec.String(fmt.Sprintf("+962 7%d %03d %04d", 7+w.work.IntN(3), w.work.IntN(1000), w.work.IntN(10000)))
}

// register is a new patient at the desk, sometimes with an extra
// attribute (the registration form's custom fields).
func (w *World) register(n *node) (string, bool) {
	id := n.nextID("pat")
	sex := []string{"male", "female"}[w.work.IntN(2)]
	dob := fmt.Sprintf("%04d-%02d-%02d", 1940+w.work.IntN(85), 1+w.work.IntN(12), 1+w.work.IntN(28))
	cols := map[string]codec.Value{
		"given_name": codec.String(w.pick(givenNames)), "surname": codec.String(w.pick(surnames)),
		"date_of_birth": codec.String(dob), "citizenship": codec.String(w.pick(citizenship)),
		"hometown": codec.String(w.pick(hometowns)), "phone": w.phone(), "sex": codec.String(sex),
		"camp":            codec.String(w.pick(camps)),
		"additional_data": jsonText(map[string]any{"household_size": 1 + w.work.IntN(9), "disability": w.work.IntN(8) == 0}),
		"metadata":        codec.JSONText("{}"), "is_deleted": codec.Bool(false),
		"government_id":       codec.String(fmt.Sprintf("%d", 100000000+w.work.IntN(900000000))),
		"external_patient_id": codec.String(fmt.Sprintf("UNHCR-%03d-%05d", w.work.IntN(1000), w.work.IntN(100000))),
		"primary_clinic_id":   codec.String(n.clinic), "last_modified_by": codec.String(n.user),
	}
	if !w.create(n, "patients", id, cols, id) {
		return "", false
	}
	if w.work.IntN(2) == 0 {
		w.create(n, "patient_additional_attributes", n.nextID("attr"), map[string]codec.Value{
			"patient_id": codec.String(id), "attribute_id": codec.String("attr.marital_status"),
			"attribute":    codec.String("marital_status"),
			"string_value": codec.String([]string{"single", "married", "widowed"}[w.work.IntN(3)]),
			"metadata":     codec.JSONText("{}"), "is_deleted": codec.Bool(false),
			"last_modified": n.now(), "server_created_at": n.now(),
		}, id)
	}
	return id, true
}

// checkIn starts a visit.
func (w *World) checkIn(n *node, p string) (string, bool) {
	id := n.nextID("visit")
	ok := w.create(n, "visits", id, map[string]codec.Value{
		"patient_id": codec.String(p), "clinic_id": codec.String(n.clinic),
		"provider_id": codec.String(n.user), "provider_name": codec.String("Dr. " + w.pick(surnames)),
		"check_in_timestamp": n.now(), "metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false),
	}, p)
	return id, ok
}

// event records a form filled in during a visit.
func (w *World) event(n *node, p, visit, form, kind string, data any) {
	w.create(n, "events", n.nextID("event"), map[string]codec.Value{
		"patient_id": codec.String(p), "form_id": codec.String(form), "visit_id": codec.String(visit),
		"event_type": codec.String(kind), "form_data": jsonText(data), "metadata": codec.JSONText("{}"),
		"is_deleted": codec.Bool(false), "recorded_by_user_id": codec.String(n.user),
	}, p)
}

type field struct {
	FieldID   string `json:"fieldId"`
	InputType string `json:"inputType"`
	Name      string `json:"name"`
	Value     any    `json:"value"`
}

// vitals is triage: a vitals row and the vitals form.
func (w *World) vitals(n *node) {
	p, ok := w.patient(n)
	if !ok {
		w.register(n)
		return
	}
	v, ok := w.visit(n, p)
	if !ok {
		return
	}
	sys, dia := 95+w.work.IntN(80), 60+w.work.IntN(45)
	hr, temp := 55+w.work.IntN(70), 36.0+float64(w.work.IntN(36))/10
	height, weight := 140+w.work.IntN(50), 45+w.work.IntN(60)
	bmi := math.Round(float64(weight)/math.Pow(float64(height)/100, 2)*10) / 10
	w.create(n, "patient_vitals", n.nextID("vitals"), map[string]codec.Value{
		"patient_id": codec.String(p), "visit_id": codec.String(v), "timestamp": n.now(),
		"systolic_bp": codec.Int(int64(sys)), "diastolic_bp": codec.Int(int64(dia)),
		"bp_position": codec.String("sitting"), "height_cm": codec.Int(int64(height)),
		"weight_kg": codec.Int(int64(weight)), "bmi": codec.Number(bmi), "heart_rate": codec.Int(int64(hr)),
		"oxygen_saturation": codec.Int(int64(90 + w.work.IntN(11))), "respiratory_rate": codec.Int(int64(12 + w.work.IntN(12))),
		"temperature_celsius": codec.Number(temp), "pain_level": codec.Int(int64(w.work.IntN(11))),
		"recorded_by_user_id": codec.String(n.user), "metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false),
	}, p)
	w.event(n, p, v, "form.vitals", "vitals", []field{
		{"bp", "text", "Blood pressure", fmt.Sprintf("%d/%d", sys, dia)},
		{"temp", "number", "Temperature", temp},
	})
}

// consult is the doctor's consultation form.
func (w *World) consult(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	v, ok := w.visit(n, p)
	if !ok {
		return
	}
	w.event(n, p, v, "form.consultation", "consultation", []field{
		{"complaint", "select", "Chief complaint", w.pick(complaints)},
		{"duration", "number", "Duration (days)", 1 + w.work.IntN(30)},
		{"notes", "text", "Notes", "examined; " + w.pick(complaints) + " noted"},
	})
}

// problem adds a diagnosis.
func (w *World) problem(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	v, _ := w.child(n, p, "visits", nil)
	pr := problems[w.work.IntN(len(problems))]
	cols := map[string]codec.Value{
		"patient_id": codec.String(p), "problem_code_system": codec.String("icd10cm"),
		"problem_code": codec.String(pr[0]), "problem_label": codec.String(pr[1]),
		"clinical_status": codec.String("active"), "verification_status": codec.String("confirmed"),
		"severity_score": codec.Int(int64(1 + w.work.IntN(5))), "onset_date": n.now(),
		"recorded_by_user_id": codec.String(n.user), "metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false),
		"last_modified": n.now(), "server_created_at": n.now(),
	}
	if v != "" {
		cols["visit_id"] = codec.String(v)
	}
	w.create(n, "patient_problems", n.nextID("problem"), cols, p)
}

// prescribe writes a prescription with its items.
func (w *World) prescribe(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	v, _ := w.child(n, p, "visits", nil)
	id := n.nextID("rx")
	var items []map[string]any
	var itemCols []map[string]codec.Value
	for range 1 + w.work.IntN(3) {
		d := drugs[w.work.IntN(len(drugs))]
		qty := 5 + w.work.IntN(26)
		dose := fmt.Sprintf("%s %s %s times daily", d.qty, d.units, []string{"one", "two", "three"}[w.work.IntN(3)])
		items = append(items, map[string]any{"drug_id": d.id, "quantity": qty, "dosage": dose})
		itemCols = append(itemCols, map[string]codec.Value{
			"prescription_id": codec.String(id), "patient_id": codec.String(p), "drug_id": codec.String(d.id),
			"clinic_id": codec.String(n.clinic), "dosage_instructions": codec.String(dose),
			"quantity_prescribed": codec.Int(int64(qty)), "quantity_dispensed": codec.Int(0),
			"refills_authorized": codec.Int(int64(w.work.IntN(3))), "refills_used": codec.Int(0),
			"item_status": codec.String("active"), "recorded_by_user_id": codec.String(n.user),
			"metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false), "last_modified": n.now(),
		})
	}
	cols := map[string]codec.Value{
		"patient_id": codec.String(p), "provider_id": codec.String(n.user), "pickup_clinic_id": codec.String(n.clinic),
		"priority":        codec.String([]string{"routine", "urgent"}[w.work.IntN(2)]),
		"expiration_date": codec.Int(n.clock.ms() + 30*dayMs), "prescribed_at": n.now(),
		"status": codec.String("pending"), "items": jsonText(items), "notes": codec.String(""),
		"metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false),
	}
	if v != "" {
		cols["visit_id"] = codec.String(v)
	}
	if !w.create(n, "prescriptions", id, cols, p) {
		return
	}
	for _, ic := range itemCols {
		w.create(n, "prescription_items", n.nextID("rxitem"), ic, p)
	}
}

// dispense hands out an active prescription item: a dispensing record,
// the item's dispensed quantity and status, the prescription's status.
func (w *World) dispense(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	item, ok := w.child(n, p, "prescription_items", func(c map[string]codec.Value) bool {
		return c["item_status"].Str == "active"
	})
	if !ok {
		return
	}
	rec, err := w.get(n, "prescription_items", item)
	if err != nil {
		return
	}
	qty, _ := rec.Cols["quantity_prescribed"].Int64()
	w.create(n, "dispensing_records", n.nextID("disp"), map[string]codec.Value{
		"clinic_id": codec.String(n.clinic), "drug_id": rec.Cols["drug_id"],
		"batch_id":             codec.String(fmt.Sprintf("batch.%s.%s", n.clinic, rec.Cols["drug_id"].Str)),
		"prescription_item_id": codec.String(item), "patient_id": codec.String(p),
		"quantity_dispensed": codec.Int(qty), "dosage_instructions": rec.Cols["dosage_instructions"],
		"days_supply": codec.Int(int64(3 + w.work.IntN(28))), "dispensed_by": codec.String(n.user),
		"dispensed_at": n.now(), "recorded_by_user_id": codec.String(n.user), "metadata": codec.JSONText("{}"),
		"is_deleted": codec.Bool(false), "last_modified": n.now(),
	}, p)
	w.update(n, "prescription_items", item, map[string]codec.Value{
		"quantity_dispensed": codec.Int(qty), "item_status": codec.String("completed"),
	})
	rx := rec.Cols["prescription_id"].Str
	if w.live(n, "prescriptions", rx) {
		w.update(n, "prescriptions", rx, map[string]codec.Value{
			"status": codec.String("picked-up"), "filled_by": codec.String(n.user), "filled_at": n.now(),
		})
	}
}

// appoint books a follow-up.
func (w *World) appoint(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	v, ok := w.child(n, p, "visits", nil)
	if !ok {
		v = ""
	}
	w.create(n, "appointments", n.nextID("appt"), map[string]codec.Value{
		"provider_id": codec.String(n.user), "clinic_id": codec.String(n.clinic), "patient_id": codec.String(p),
		"user_id": codec.String(n.user), "current_visit_id": codec.String(v),
		"timestamp": codec.Int(n.clock.ms() + int64(1+w.work.IntN(28))*dayMs), "duration": codec.Int(30),
		"reason": codec.String("follow-up: " + w.pick(complaints)), "notes": codec.String(""),
		"is_walk_in": codec.Bool(false), "departments": jsonText([]string{"general"}),
		"status": codec.String("pending"), "metadata": codec.JSONText("{}"), "is_deleted": codec.Bool(false),
	}, p)
}

// moveAppointment changes an appointment's status or time.
func (w *World) moveAppointment(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	a, ok := w.child(n, p, "appointments", nil)
	if !ok {
		return
	}
	cols := map[string]codec.Value{"status": codec.String(w.pick([]string{"confirmed", "checked_in", "completed", "cancelled"}))}
	if w.work.IntN(3) == 0 {
		cols["timestamp"] = codec.Int(n.clock.ms() + int64(1+w.work.IntN(14))*dayMs)
	}
	if w.work.IntN(3) == 0 {
		cols["notes"] = codec.String("called patient: " + w.pick([]string{"no answer", "confirmed", "asked to move"}))
	}
	w.update(n, "appointments", a, cols)
}

// editPatient corrects a patient's details: often the same few columns
// (phone, camp) on several devices, so edits meet on the same and on
// different columns of the same rows.
func (w *World) editPatient(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	w.update(n, "patients", p, w.edit(n, "patients"))
}

// fix corrects a clinical record of a patient: a vitals reading, a
// form's data, a problem's status, a visit's provider.
func (w *World) fix(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	table := []string{"patient_vitals", "events", "patient_problems", "visits"}[w.work.IntN(4)]
	if id, ok := w.child(n, p, table, nil); ok {
		w.update(n, table, id, w.edit(n, table))
	}
}

// editable reports whether edit knows how to correct rows of a table.
func editable(table string) bool {
	switch table {
	case "patients", "patient_vitals", "events", "patient_problems", "visits", "appointments":
		return true
	}
	return false
}

// edit returns the columns a user changes correcting a row of table.
func (w *World) edit(n *node, table string) map[string]codec.Value {
	switch table {
	case "patients":
		cols := map[string]codec.Value{}
		for range 1 + w.work.IntN(2) {
			switch w.work.IntN(6) {
			case 0, 1:
				cols["phone"] = w.phone()
			case 2:
				cols["camp"] = codec.String(w.pick(camps))
			case 3:
				cols["hometown"] = codec.String(w.pick(hometowns))
			case 4:
				cols["additional_data"] = jsonText(map[string]any{"household_size": 1 + w.work.IntN(9), "disability": w.work.IntN(8) == 0})
			case 5:
				cols["given_name"] = codec.String(w.pick(givenNames))
			}
		}
		cols["last_modified_by"] = codec.String(n.user)
		return cols
	case "patient_vitals":
		return map[string]codec.Value{
			"systolic_bp": codec.Int(int64(95 + w.work.IntN(80))), "diastolic_bp": codec.Int(int64(60 + w.work.IntN(45))),
		}
	case "events":
		return map[string]codec.Value{"form_data": jsonText([]field{
			{"complaint", "select", "Chief complaint", w.pick(complaints)},
			{"notes", "text", "Notes", "amended"},
		})}
	case "patient_problems":
		return map[string]codec.Value{
			"clinical_status": codec.String(w.pick([]string{"resolved", "remission", "active"})), "end_date": n.now(),
			"last_modified": n.now(),
		}
	case "visits":
		return map[string]codec.Value{"provider_name": codec.String("Dr. " + w.pick(surnames))}
	case "appointments":
		return map[string]codec.Value{"status": codec.String(w.pick([]string{"confirmed", "checked_in", "completed", "cancelled"}))}
	}
	panic("sim: no edit for table " + table)
}

// discard deletes a record entered in error.
func (w *World) discard(n *node) {
	p, ok := w.patient(n)
	if !ok {
		return
	}
	table := w.pick([]string{"patient_vitals", "events", "patient_problems", "appointments", "patient_additional_attributes"})
	if id, ok := w.child(n, p, table, nil); ok {
		w.remove(n, table, id)
	}
}

// deletePatient removes a patient registered twice, with everything of
// theirs this node holds: as WatermelonDB requires, the deleting node
// deletes the children itself.
func (w *World) deletePatient(n *node, p string) {
	for _, k := range slices.Clone(w.model.children[p]) {
		if w.live(n, k.table, k.id) {
			w.remove(n, k.table, k.id)
		}
	}
	w.remove(n, "patients", p)
}

// deviceAction is one thing a device's user does, chosen by role.
func (w *World) deviceAction(n *node) {
	type act struct {
		weight int
		fn     func(*node)
	}
	reg := func(n *node) { w.register(n) }
	visit := func(n *node) {
		if p, ok := w.patient(n); ok {
			w.checkIn(n, p)
		}
	}
	delPatient := func(n *node) {
		if p, ok := w.patient(n); ok {
			w.deletePatient(n, p)
		}
	}
	var acts []act
	switch n.role {
	case roleDesk:
		acts = []act{{40, reg}, {20, w.editPatient}, {12, w.appoint}, {8, w.moveAppointment}, {10, visit}, {3, w.discard}, {1, delPatient}}
	case roleTriage:
		acts = []act{{45, w.vitals}, {12, visit}, {12, w.editPatient}, {8, w.fix}, {4, w.discard}, {6, reg}}
	case roleDoctor:
		acts = []act{{30, w.consult}, {15, w.problem}, {20, w.prescribe}, {10, w.fix}, {6, w.editPatient}, {5, w.moveAppointment}, {3, w.discard}, {6, w.dispense}, {1, delPatient}}
	default:
		acts = []act{{55, w.dispense}, {10, w.editPatient}, {10, w.fix}, {5, w.moveAppointment}, {2, w.discard}}
	}
	total := 0
	for _, a := range acts {
		total += a.weight
	}
	r := w.work.IntN(total)
	for _, a := range acts {
		if r < a.weight {
			a.fn(n)
			return
		}
		r -= a.weight
	}
}

// adminAction is the cloud's web admin at work: drug prices, stock
// counts, a patient's details fixed from the office, a duplicate
// registration removed, a new user.
func (w *World) adminAction() {
	c := w.cloud
	switch w.work.IntN(10) {
	case 0, 1:
		d := drugs[w.work.IntN(len(drugs))]
		w.update(c, "drug_catalogue", d.id, map[string]codec.Value{
			"sale_price": codec.String(fmt.Sprintf("%.2f", 0.01+w.work.Float64()*3)), "last_modified": c.now(),
		})
	case 2, 3:
		clinic := w.pick(w.clinics)
		d := drugs[w.work.IntN(len(drugs))]
		w.update(c, "clinic_inventory", fmt.Sprintf("batch.%s.%s", clinic, d.id), map[string]codec.Value{
			"quantity_available": codec.Int(int64(w.work.IntN(2000))), "last_counted_at": c.now(), "last_modified": c.now(),
		})
	case 4, 5, 6:
		p, ok := w.anyPatient(c)
		if !ok {
			return
		}
		cols := map[string]codec.Value{"last_modified_by": codec.String("user.admin")}
		if w.work.IntN(2) == 0 {
			cols["phone"] = w.phone()
		} else {
			cols["surname"] = codec.String(w.pick(surnames))
		}
		w.update(c, "patients", p, cols)
	case 7:
		if p, ok := w.anyPatient(c); ok && w.work.IntN(3) == 0 {
			w.deletePatient(c, p)
		}
	case 8:
		clinic := w.pick(w.clinics)
		id := c.nextID("user")
		w.create(c, "users", id, map[string]codec.Value{
			"clinic_id": codec.String(clinic), "name": codec.String(w.pick(givenNames) + " " + w.pick(surnames)),
			"role": codec.String("provider"), "email": codec.String(id + "@clinic.example"),
			"is_deleted": codec.Bool(false), "hashed_password": codec.String("$2b$10$" + strings.Repeat("x", 53)),
		}, "")
	case 9:
		w.update(c, "app_config", "config.sync_interval", map[string]codec.Value{
			"value": codec.String(fmt.Sprint(5 + w.work.IntN(30))), "last_modified": c.now(),
		})
	}
}

// anyPatient picks a patient the cloud holds, of any clinic.
func (w *World) anyPatient(c *node) (string, bool) {
	clinic := w.pick(w.clinics)
	ids := w.model.patients[clinic]
	for range 4 {
		if len(ids) == 0 {
			return "", false
		}
		id := ids[w.work.IntN(len(ids))]
		if w.live(c, "patients", id) {
			return id, true
		}
	}
	return "", false
}

// seedCloud writes the reference data every deployment starts from:
// clinics, users and their permissions, forms, drugs, departments,
// stock, app config, and a few patients each clinic already knows.
func (w *World) seedCloud() {
	c := w.cloud
	f := codec.Bool(false)
	for i, clinic := range w.clinics {
		w.create(c, "clinics", clinic, map[string]codec.Value{
			"name": codec.String(fmt.Sprintf("%s Health Centre", camps[i%len(camps)])), "is_deleted": f, "is_archived": f,
			"address": codec.String(fmt.Sprintf("Block %d, %s", 1+i, camps[i%len(camps)])),
		}, "")
		w.create(c, "registration_forms", "regform."+clinic, map[string]codec.Value{
			"name": codec.String("Registration"), "fields": jsonText([]field{{"marital_status", "select", "Marital status", nil}}),
			"metadata": codec.JSONText("{}"), "is_deleted": f, "clinic_id": codec.String(clinic),
		}, "")
		for _, dep := range []string{"general", "pharmacy"} {
			w.create(c, "clinic_departments", fmt.Sprintf("dept.%s.%s", clinic, dep), map[string]codec.Value{
				"clinic_id": codec.String(clinic), "name": codec.String(dep), "status": codec.String("active"),
				"can_dispense_medications": codec.Bool(dep == "pharmacy"), "can_perform_labs": f, "can_perform_imaging": f,
				"additional_capabilities": codec.JSONText("[]"), "metadata": codec.JSONText("{}"), "is_deleted": f,
				"last_modified": c.now(), "server_created_at": c.now(),
			}, "")
		}
		users := []string{"user.admin." + clinic}
		for _, d := range w.devices {
			if d.clinic == clinic {
				users = append(users, d.user)
			}
		}
		for _, u := range users {
			role, hash := "admin", "$2b$10$"+strings.Repeat("h", 53)
			for _, d := range w.devices {
				if d.user == u {
					role = roleNames[d.role]
					if d.wdb != nil {
						hash = wdbPasswordHash // it signs in with Basic credentials
					}
				}
			}
			w.create(c, "users", u, map[string]codec.Value{
				"clinic_id": codec.String(clinic), "name": codec.String(w.pick(givenNames) + " " + w.pick(surnames)),
				"role": codec.String(role), "email": codec.String(u + "@clinic.example"), "is_deleted": f,
				"hashed_password": codec.String(hash),
			}, "")
			t := codec.Bool(true)
			w.create(c, "user_clinic_permissions", "perm."+u, map[string]codec.Value{
				"user_id": codec.String(u), "clinic_id": codec.String(clinic), "can_register_patients": t,
				"can_view_history": t, "can_edit_records": t, "can_delete_records": t, "is_clinic_admin": codec.Bool(role == "admin"),
				"can_edit_other_provider_event": t, "can_download_patient_reports": t, "can_prescribe_medications": t,
				"can_dispense_medications": t, "can_delete_patient_visits": t, "can_delete_patient_records": t,
			}, "")
		}
	}
	forms := []struct{ id, name, clinics string }{
		{"form.vitals", "Vitals", "[]"}, {"form.consultation", "Consultation", "[]"},
		{"form.dental", "Dental", fmt.Sprintf("[%q]", w.clinics[0])},
	}
	for _, fm := range forms {
		w.create(c, "event_forms", fm.id, map[string]codec.Value{
			"name": codec.String(fm.name), "description": codec.String(fm.name + " form"), "language": codec.String("en"),
			"is_editable": codec.Bool(true), "is_snapshot_form": f, "form_fields": jsonText([]field{{"notes", "text", "Notes", nil}}),
			"metadata": codec.JSONText("{}"), "is_deleted": f, "clinic_ids": codec.JSONText(fm.clinics),
		}, "")
	}
	for _, d := range drugs {
		cols := map[string]codec.Value{
			"generic_name": codec.String(d.generic), "form": codec.String(d.form), "route": codec.String(d.route),
			"dosage_quantity": codec.String(d.qty), "dosage_units": codec.String(d.units), "sale_price": codec.String(d.price),
			"sale_currency": codec.String("USD"), "min_stock_level": codec.Int(100), "is_controlled": f,
			"requires_refrigeration": codec.Bool(d.form == "injection"), "is_active": codec.Bool(true),
			"metadata": codec.JSONText("{}"), "is_deleted": f, "last_modified": c.now(),
		}
		if d.brand != "" {
			cols["brand_name"] = codec.String(d.brand)
		}
		w.create(c, "drug_catalogue", d.id, cols, "")
		for _, clinic := range w.clinics {
			w.create(c, "clinic_inventory", fmt.Sprintf("batch.%s.%s", clinic, d.id), map[string]codec.Value{
				"clinic_id": codec.String(clinic), "drug_id": codec.String(d.id),
				"batch_id":           codec.String(fmt.Sprintf("batch.%s.%s", clinic, d.id)),
				"quantity_available": codec.Int(int64(200 + w.work.IntN(2000))), "reserved_quantity": codec.Int(0),
				"metadata": codec.JSONText("{}"), "is_deleted": f, "last_modified": c.now(),
				"batch_number":      codec.String(fmt.Sprintf("LOT%05d", w.work.IntN(100000))),
				"batch_expiry_date": codec.Int(c.clock.ms() + int64(90+w.work.IntN(600))*dayMs),
			}, "")
		}
	}
	for _, kv := range [][2]string{{"sync_interval", "10"}, {"default_language", "ar"}, {"currency", "USD"}} {
		w.create(c, "app_config", "config."+kv[0], map[string]codec.Value{
			"namespace": codec.String("app"), "key": codec.String(kv[0]), "value": codec.String(kv[1]),
			"data_type": codec.String("string"), "last_modified": c.now(),
		}, "")
	}
	// Patients each clinic already had: registered on the cloud.
	for _, clinic := range w.clinics {
		c.clinic = clinic
		for range 6 {
			if p, ok := w.register(c); ok {
				w.checkIn(c, p)
			}
		}
	}
	c.clinic = ""
}

// scheduleWorkload lays out every device's day: log in and sync at
// opening, work (one action every minute or two), sync every few
// minutes and at closing; hubs sync with the cloud all day and
// night; the cloud admin works office hours.
func (w *World) scheduleWorkload() {
	for day := range w.opts.Days {
		open := w.dayStart(day) + openAt
		for _, n := range w.devices {
			w.at(open+w.work.Int64N(15*minMs), func() { w.syncNode(n, actors.AfterLogin, 0, "login") })
			w.at(w.dayStart(day)+shutAt+w.work.Int64N(30*minMs), func() { w.syncNode(n, actors.Manual, 0, "closing") })
		}
	}
	for _, n := range w.devices {
		w.at(w.dayStart(0)+openAt+5*minMs+w.work.Int64N(25*minMs), func() { w.deviceLoop(n) })
		w.at(w.dayStart(0)+openAt+20*minMs+w.work.Int64N(10*minMs), func() { w.deviceSyncLoop(n) })
	}
	for _, h := range w.hubs {
		w.at(w.dayStart(0)+openAt+w.work.Int64N(5*minMs), func() { w.hubLoop(h) })
	}
	w.at(w.dayStart(0)+openAt+w.work.Int64N(60*minMs), w.adminLoop)
}

// nextOpen returns the next working time after t+gap: the same day if
// the clinics are still open, else a random time in the next day's
// first half hour (or -1 after the last day).
func (w *World) nextOpen(t, gap int64) int64 {
	if _, ok := w.open(t + gap); ok {
		return t + gap
	}
	day := int((t-w.base)/dayMs) + 1
	if (t-w.base)%dayMs < openAt {
		day--
	}
	if day >= w.opts.Days {
		return -1
	}
	return w.dayStart(day) + openAt + w.work.Int64N(30*minMs)
}

func (w *World) deviceLoop(n *node) {
	w.deviceAction(n)
	if t := w.nextOpen(w.clock.now, 30_000+w.work.Int64N(240_000)); t >= 0 {
		w.at(t, func() { w.deviceLoop(n) })
	}
}

// deviceSyncLoop is a device's periodic sync: manual mostly, sometimes
// a force upload or download of the last days.
func (w *World) deviceSyncLoop(n *node) {
	switch r := w.work.IntN(100); {
	case r == 0:
		w.syncNode(n, actors.ForceUpload, n.clock.ms()-10*minMs-w.work.Int64N(6*hourMs), "force upload")
	case r == 1:
		w.syncNode(n, actors.ForceDownload, n.clock.ms()-10*minMs-w.work.Int64N(6*hourMs), "force download")
	default:
		w.syncNode(n, actors.Manual, 0, "periodic")
	}
	if t := w.nextOpen(w.clock.now, 3*minMs+w.work.Int64N(12*minMs)); t >= 0 {
		w.at(t, func() { w.deviceSyncLoop(n) })
	}
}

func (w *World) hubLoop(h *node) {
	w.syncNode(h, actors.Manual, 0, "periodic")
	gap := 20*minMs + w.work.Int64N(20*minMs)
	if _, ok := w.open(w.clock.now); ok {
		gap = 2*minMs + w.work.Int64N(4*minMs)
	}
	if t := w.clock.now + gap; t < w.runEnd {
		w.at(t, func() { w.hubLoop(h) })
	}
}

func (w *World) adminLoop() {
	w.adminAction()
	if t := w.nextOpen(w.clock.now, 30*minMs+w.work.Int64N(90*minMs)); t >= 0 {
		w.at(t, w.adminLoop)
	}
}
