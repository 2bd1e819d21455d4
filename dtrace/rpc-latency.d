#!/usr/sbin/dtrace -s
/*
 * rpc-latency.d: latency of every RPC, in microseconds, a power-of-two
 * histogram per method (optionally per method and bucket), plus error
 * counts per method and error name; printed when dtrace exits (^C).
 *
 *   dtrace -s rpc-latency.d [-p PID]           per method
 *   dtrace -s rpc-latency.d bucket [-p PID]    per method and bucket
 *
 *     getObject mybucket (us)
 *              value  ------------- Distribution ------------- count
 *
 *     getObject ObjectNotFoundError 12        (errors)
 *
 * Uses moray request-start/request-done, which fire for every method
 * (sql, listen, version... included), matched by (conn_id, msgid).  The
 * bucket comes from the RPC's own -start probe (arg1 req_id, arg2 bucket);
 * methods without one show "".  (rhas says whether rbucket is set: reading
 * an unset string element would dereference NULL.)
 *
 * Linux twin: dtrace/linux/rpc-latency.bt.
 */

#pragma D option quiet
#pragma D option defaultargs

moray*:::request-start
{
	rstart[pid, arg0, arg1] = timestamp;
}

moray*:::createbucket-start,
moray*:::getbucket-start,
moray*:::updatebucket-start,
moray*:::delbucket-start,
moray*:::putobject-start,
moray*:::getobject-start,
moray*:::delobject-start,
moray*:::findobjects-start,
moray*:::update-start,
moray*:::delmany-start,
moray*:::reindexobjects-start
/$$1 == "bucket"/
{
	rbucket[pid, copyinstr(arg1)] = copyinstr(arg2);
	rhas[pid, copyinstr(arg1)] = 1;
}

moray*:::request-done
/rstart[pid, arg0, arg1] != 0/
{
	this->rid = copyinstr(arg3);
	this->bucket = rhas[pid, this->rid] ? rbucket[pid, this->rid] : "";
	@lat[copyinstr(arg2), this->bucket] =
	    quantize((timestamp - rstart[pid, arg0, arg1]) / 1000);
	rstart[pid, arg0, arg1] = 0;
	rbucket[pid, this->rid] = 0;
	rhas[pid, this->rid] = 0;
}

moray*:::request-done
/copyinstr(arg4) != ""/
{
	@errs[copyinstr(arg2), copyinstr(arg4)] = count();
}

END
{
	printa("\n  %s %s (us)\n%@d", @lat);
	printf("\n");
	printa("  %s %s %@d\n", @errs);
}
