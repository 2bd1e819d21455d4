#!/usr/sbin/dtrace -s
/*
 * moray-queries.d: every SQL statement Moray sends, with wall-clock time,
 * and its completion (or failure) with the latency in microseconds.
 *
 *   dtrace -s moray-queries.d [-p PID]
 *
 *   2024 Nov 22 04:23:45  81234 6a1c...-4f0e start SELECT ... FROM bucket WHERE ...
 *   2024 Nov 22 04:23:45  81234 6a1c...-4f0e done 412us
 *   2024 Nov 22 04:23:46  81234 7b2d...-9a01 error 30012us error: canceling statement ...
 *
 * Statements are matched by req_id (arg0): one request uses one
 * connection, so it has at most one statement outstanding.  Health checks
 * use a fresh UUID each.  SQL longer than strsize (256) is cut.
 *
 * Linux twin: dtrace/linux/moray-queries.bt.
 */

#pragma D option quiet
#pragma D option switchrate=10hz

moray*:::query-start
{
	this->rid = copyinstr(arg0);
	qstart[pid, this->rid] = timestamp;
	printf("%Y %6d %-36s start %s\n", walltimestamp, pid, this->rid,
	    copyinstr(arg1));
}

moray*:::query-done
/qstart[pid, copyinstr(arg0)] != 0/
{
	this->rid = copyinstr(arg0);
	printf("%Y %6d %-36s done %dus\n", walltimestamp, pid, this->rid,
	    (timestamp - qstart[pid, this->rid]) / 1000);
	qstart[pid, this->rid] = 0;
}

moray*:::query-error
/qstart[pid, copyinstr(arg0)] != 0/
{
	this->rid = copyinstr(arg0);
	printf("%Y %6d %-36s error %dus %s\n", walltimestamp, pid, this->rid,
	    (timestamp - qstart[pid, this->rid]) / 1000, copyinstr(arg2));
	qstart[pid, this->rid] = 0;
}
