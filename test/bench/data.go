package main

// The rows the benchmarks load: Hikma patients and their visits,
// events, vitals and prescriptions, with the columns of codec/schema's
// catalog, written as ndjson (one JSON object a line, as `node import`
// reads and a WatermelonDB push carries them). Ids are random UUIDs,
// so a file's order is a random id order. Everything comes from a
// seeded generator: the same seed gives the same rows.

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
)

// relatedTables are the tables whose rows belong to a patient, in
// load order: a parent before its children (a hub's import checks a
// child's clinic through its patient and visit).
var relatedTables = []string{"visits", "events", "patient_vitals", "prescriptions"}

// clinic is the one clinic every row belongs to.
const clinic = "c1"

// sampleRows is how many patient lines a dataset keeps in memory (the
// rows incremental changes).
const sampleRows = 100

// tableFile is one table's rows in an ndjson file.
type tableFile struct {
	table, path string
	rows        int
}

// dataset is the files of one set of rows, patients first.
type dataset struct {
	files  []tableFile
	sample [][]byte // the first patient lines, up to sampleRows
	bytes  int64    // the files' size
}

func (d *dataset) rows() int {
	n := 0
	for _, f := range d.files {
		n += f.rows
	}
	return n
}

// only returns the dataset's file of one table.
func (d *dataset) only(table string) tableFile {
	for _, f := range d.files {
		if f.table == table {
			return f
		}
	}
	panic("bench: the dataset has no table " + table)
}

// writeDataset writes n patients under dir, and with related n rows of
// each related table, each belonging to a random generated patient's
// visit.
func writeDataset(dir string, n int, related bool, seed uint64) (*dataset, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	g := newGen(seed)
	d := &dataset{}
	patients := make([]string, n)
	visits := make([]string, n) // visit i is patient i's
	err := d.write(filepath.Join(dir, "patients.ndjson"), "patients", n, func(i int) []byte {
		patients[i] = g.id()
		line := g.patient(patients[i])
		if len(d.sample) < sampleRows {
			d.sample = append(d.sample, append([]byte(nil), line...))
		}
		return line
	})
	if err != nil || !related {
		return d, err
	}
	for _, table := range relatedTables {
		err := d.write(filepath.Join(dir, table+".ndjson"), table, n, func(i int) []byte {
			if table == "visits" {
				visits[i] = g.id()
				return g.visit(visits[i], patients[i])
			}
			j := g.rng.IntN(n) // a patient's visit
			switch table {
			case "events":
				return g.event(patients[j], visits[j])
			case "patient_vitals":
				return g.vitals(patients[j], visits[j])
			}
			return g.prescription(patients[j], visits[j])
		})
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}

// write writes n lines made by line to path.
func (d *dataset) write(path, table string, n int, line func(i int) []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := 0; i < n; i++ {
		b := line(i)
		d.bytes += int64(len(b)) + 1
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	d.files = append(d.files, tableFile{table, path, n})
	return nil
}

// gen makes rows. Its values are printable ASCII, where Go's string
// quoting is JSON's.
type gen struct {
	rng       *rand.Rand
	providers []string // user ids: providers and whoever records
	forms     []string // event form ids
	b         []byte   // the line being built, reused
}

// newest is the latest a generated time may be (2025-06-01 UTC): every
// row is dated in the two years before it, in the past of any clock
// the nodes run on.
const newest = 1748736000000

func newGen(seed uint64) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(seed, 0x636c696e6963))}
	for range 20 {
		g.providers = append(g.providers, g.id())
	}
	for range len(eventTypes) {
		g.forms = append(g.forms, g.id())
	}
	return g
}

// id returns a random version-4 UUID.
func (g *gen) id() string {
	hi, lo := g.rng.Uint64(), g.rng.Uint64()
	hi = hi&^(0xf<<12) | 0x4<<12 // version 4
	lo = lo&^(0x3<<62) | 0x2<<62 // RFC 4122 variant
	return fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", hi>>32, hi>>16&0xffff, hi&0xffff, lo>>48, lo&0xffffffffffff)
}

func (g *gen) pick(list []string) string { return list[g.rng.IntN(len(list))] }

// times returns a creation time in the two years before newest and an
// update time at or after it.
func (g *gen) times() (created, updated int64) {
	created = newest - g.rng.Int64N(2*365*24*3600*1000)
	return created, created + g.rng.Int64N(newest-created+1)
}

func (g *gen) patient(id string) []byte {
	created, updated := g.times()
	dob := fmt.Sprintf("%04d-%02d-%02d", 1940+g.rng.IntN(84), 1+g.rng.IntN(12), 1+g.rng.IntN(28))
	o := g.start(id)
	o.str("given_name", g.pick(givenNames))
	o.str("surname", g.pick(surnames))
	o.str("date_of_birth", dob)
	o.str("citizenship", g.pick(citizenships))
	o.str("hometown", g.pick(towns))
	o.str("phone", fmt.Sprintf("+962 7%d %03d %04d", 7+g.rng.IntN(3), g.rng.IntN(1000), g.rng.IntN(10000)))
	o.str("sex", g.pick([]string{"female", "male"}))
	o.str("camp", g.pick(camps))
	o.str("additional_data", "{}")
	o.str("metadata", "{}")
	o.str("photo_url", "https://files.example.org/clinic/"+clinic+"/photos/"+g.id()+".jpg")
	o.boolean("is_deleted", false)
	o.null("deleted_at")
	o.num("created_at", created)
	o.num("updated_at", updated)
	o.str("government_id", fmt.Sprintf("%010d", g.rng.Int64N(1e10)))
	o.str("external_patient_id", g.id())
	o.str("primary_clinic_id", clinic)
	o.str("last_modified_by", g.pick(g.providers))
	return o.end()
}

func (g *gen) visit(id, patient string) []byte {
	created, updated := g.times()
	o := g.start(id)
	o.str("patient_id", patient)
	o.str("clinic_id", clinic)
	p := g.rng.IntN(len(g.providers))
	o.str("provider_id", g.providers[p])
	o.str("provider_name", "Dr. "+surnames[p%len(surnames)])
	o.num("check_in_timestamp", created)
	o.str("metadata", "{}")
	o.boolean("is_deleted", false)
	o.null("deleted_at")
	o.num("created_at", created)
	o.num("updated_at", updated)
	return o.end()
}

func (g *gen) event(patient, visit string) []byte {
	created, updated := g.times()
	k := g.rng.IntN(len(eventTypes))
	form := fmt.Sprintf(`[{"fieldId":"%s","name":"Complaint","value":"%s","inputType":"text"},`+
		`{"fieldId":"%s","name":"Duration (days)","value":"%d","inputType":"number"}]`,
		g.id(), g.pick(complaints), g.id(), 1+g.rng.IntN(30))
	o := g.start(g.id())
	o.str("patient_id", patient)
	o.str("form_id", g.forms[k])
	o.str("visit_id", visit)
	o.str("event_type", eventTypes[k])
	o.str("form_data", form)
	o.str("metadata", "{}")
	o.boolean("is_deleted", false)
	o.null("deleted_at")
	o.num("created_at", created)
	o.num("updated_at", updated)
	o.str("recorded_by_user_id", g.pick(g.providers))
	return o.end()
}

func (g *gen) vitals(patient, visit string) []byte {
	created, updated := g.times()
	height := 150 + g.rng.IntN(45)
	weight := 45 + g.rng.IntN(60)
	o := g.start(g.id())
	o.str("patient_id", patient)
	o.str("visit_id", visit)
	o.num("timestamp", created)
	o.num("systolic_bp", int64(100+g.rng.IntN(60)))
	o.num("diastolic_bp", int64(60+g.rng.IntN(35)))
	o.str("bp_position", g.pick([]string{"sitting", "standing", "lying"}))
	o.num("height_cm", int64(height))
	o.num("weight_kg", int64(weight))
	o.raw("bmi", strconv.FormatFloat(float64(weight)*10000/float64(height*height), 'f', 1, 64))
	o.null("waist_circumference_cm")
	o.num("heart_rate", int64(55+g.rng.IntN(50)))
	o.num("pulse_rate", int64(55+g.rng.IntN(50)))
	o.num("oxygen_saturation", int64(92+g.rng.IntN(8)))
	o.num("respiratory_rate", int64(12+g.rng.IntN(10)))
	o.raw("temperature_celsius", fmt.Sprintf("36.%d", g.rng.IntN(10)))
	o.num("pain_level", int64(g.rng.IntN(11)))
	o.str("recorded_by_user_id", g.pick(g.providers))
	o.str("metadata", "{}")
	o.boolean("is_deleted", false)
	o.num("created_at", created)
	o.num("updated_at", updated)
	o.null("deleted_at")
	o.null("event_id")
	return o.end()
}

func (g *gen) prescription(patient, visit string) []byte {
	created, updated := g.times()
	items := fmt.Sprintf(`[{"medication":"%s","dose":"1 tablet","frequency":"%d times a day","duration":"%d days"}]`,
		g.pick(medications), 1+g.rng.IntN(3), 3+g.rng.IntN(12))
	o := g.start(g.id())
	o.str("patient_id", patient)
	o.str("provider_id", g.pick(g.providers))
	o.null("filled_by")
	o.str("pickup_clinic_id", clinic)
	o.str("visit_id", visit)
	o.str("priority", g.pick([]string{"normal", "high", "low", "emergency"}))
	o.num("expiration_date", created+30*24*3600*1000)
	o.num("prescribed_at", created)
	o.null("filled_at")
	o.str("status", g.pick([]string{"pending", "prepared", "picked-up"}))
	o.str("items", items)
	o.str("notes", "")
	o.str("metadata", "{}")
	o.boolean("is_deleted", false)
	o.num("created_at", created)
	o.num("updated_at", updated)
	o.null("deleted_at")
	return o.end()
}

// obj builds one JSON object in g.b.
type obj struct{ g *gen }

func (g *gen) start(id string) obj {
	g.b = append(g.b[:0], `{"id":`...)
	g.b = strconv.AppendQuote(g.b, id)
	return obj{g}
}

func (o obj) key(k string) {
	o.g.b = append(o.g.b, ',', '"')
	o.g.b = append(append(o.g.b, k...), '"', ':')
}

func (o obj) str(k, v string)          { o.key(k); o.g.b = strconv.AppendQuote(o.g.b, v) }
func (o obj) num(k string, v int64)    { o.key(k); o.g.b = strconv.AppendInt(o.g.b, v, 10) }
func (o obj) raw(k, v string)          { o.key(k); o.g.b = append(o.g.b, v...) }
func (o obj) null(k string)            { o.key(k); o.g.b = append(o.g.b, "null"...) }
func (o obj) boolean(k string, v bool) { o.key(k); o.g.b = strconv.AppendBool(o.g.b, v) }
func (o obj) end() []byte              { o.g.b = append(o.g.b, '}'); return o.g.b }

var (
	givenNames = []string{"Amina", "Fatima", "Layla", "Noor", "Huda", "Rania", "Salma", "Yasmin", "Mariam", "Zainab",
		"Omar", "Ahmad", "Khalid", "Yusuf", "Ibrahim", "Hassan", "Mahmoud", "Tariq", "Sami", "Bilal"}
	surnames = []string{"Al-Haddad", "Khoury", "Nasser", "Saleh", "Abu-Zaid", "Hamdan", "Qasem", "Darwish", "Barakat",
		"Mansour", "Haddadin", "Odeh", "Shami", "Jaber", "Rahman", "Yassin", "Tamimi", "Aziz", "Sabbagh", "Najjar"}
	citizenships = []string{"Jordanian", "Syrian", "Iraqi", "Palestinian", "Yemeni", "Sudanese"}
	towns        = []string{"Irbid, Northern Governorate, Jordan", "Mafraq, Northern Governorate, Jordan",
		"Zarqa, Central Governorate, Jordan", "Daraa, Southern Syria", "Homs, Central Syria", "Aleppo, Northern Syria",
		"Amman, Central Governorate, Jordan"}
	camps = []string{"Zaatari camp, district 7, block 12", "Azraq camp, village 3, street 5",
		"Emirati Jordanian camp, sector 2", "host community, no camp"}
	eventTypes  = []string{"Medical History", "Physical Examination", "Complaint", "Diagnosis", "Treatment Plan"}
	complaints  = []string{"headache for several days", "persistent dry cough", "lower back pain", "fever and chills", "abdominal pain after meals"}
	medications = []string{"Amoxicillin 500mg", "Paracetamol 500mg", "Ibuprofen 400mg", "Metformin 850mg", "Amlodipine 5mg", "Salbutamol inhaler"}
)

// avgBytes is the mean size of a file's lines.
func avgBytes(f tableFile) float64 {
	st, err := os.Stat(f.path)
	if err != nil || f.rows == 0 {
		return 0
	}
	return float64(st.Size())/float64(f.rows) - 1
}
