#!/usr/sbin/dtrace -Cs
/*
 * moraystat.d: one line per second per Moray process.
 *
 *   dtrace -Cs moraystat.d            (all moray processes in the zone)
 *
 *   PID       CONN  QLEN    OPS  GETS  FIND  PUTS  UPDS  DELS  BTCH  RIDX
 *   81234        3     0    212    80    40    60     0     4     1     0
 *
 * CONN  most busy PostgreSQL connections seen at a claim (total - idle -
 *       pending, from pool-checkout), QLEN most claim waiters; OPS SQL
 *       statements sent (query-start); then RPCs started: GETS getobject,
 *       FIND findobjects, PUTS putobject, UPDS updateObjects, DELS delobject
 *       + deleteMany, BTCH batch, RIDX reindexObjects (the reference script
 *       always printed 0 here; this one counts).  Header every 5 lines.
 *       A process with no activity in a second prints no line.
 *
 * Linux twin: dtrace/linux/moraystat.bt (tools/bt moraystat PID).
 */

#pragma D option quiet

#define HDR_FMT  "%-8s %5s %5s %6s %5s %5s %5s %5s %5s %5s %5s\n"
#define LINE_FMT "%-8d %@5d %@5d %@6d %@5d %@5d %@5d %@5d %@5d %@5d %@5d\n"

int lines;	/* lines until the next header */

moray*:::pool-checkout
{
	@conn[pid] = max(arg0 - arg1 - arg2);
	@qlen[pid] = max(arg3);
}

moray*:::query-start
{
	@ops[pid] = count();
}

moray*:::getobject-start
{
	@gets[pid] = count();
}

moray*:::findobjects-start
{
	@find[pid] = count();
}

moray*:::putobject-start
{
	@puts[pid] = count();
}

moray*:::update-start
{
	@upds[pid] = count();
}

moray*:::delobject-start,
moray*:::delmany-start
{
	@dels[pid] = count();
}

moray*:::batch-start
{
	@btch[pid] = count();
}

moray*:::reindexobjects-start
{
	@ridx[pid] = count();
}

profile:::tick-1sec
/lines == 0/
{
	printf(HDR_FMT, "PID", "CONN", "QLEN", "OPS", "GETS", "FIND", "PUTS",
	    "UPDS", "DELS", "BTCH", "RIDX");
	lines = 5;
}

profile:::tick-1sec
{
	printa(LINE_FMT, @conn, @qlen, @ops, @gets, @find, @puts, @upds,
	    @dels, @btch, @ridx);
	trunc(@conn); trunc(@qlen); trunc(@ops); trunc(@gets); trunc(@find);
	trunc(@puts); trunc(@upds); trunc(@dels); trunc(@btch); trunc(@ridx);
	lines--;
}
