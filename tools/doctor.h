/*
 * shmlease doctor: checks what breaks tables in the field and says, in plain
 * words, why and what to do (doctor.c).
 */
#ifndef SHMLEASE_DOCTOR_H
#define SHMLEASE_DOCTOR_H

/* `shmlease doctor [options] [TABLE...]`, argv[0] being "doctor": the exit
 * status (0 nothing failed, 1 something failed, 64 usage). */
int cmd_doctor(int argc, char **argv);

#endif
