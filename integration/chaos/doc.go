// Package chaos is the chaos suite (make chaos; a slice of it runs in make
// test): the default chain run through libcni on a lab node while every
// stage is SIGKILLed at random moments of ADD and DEL, on a quiet node and
// under ~50 concurrent attachments, followed by the runtime's recovery;
// node reboots; uplink flaps. See README.md.
package chaos
