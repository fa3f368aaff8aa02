#!/bin/sh
# Runs one example of examples/tasks and checks that it exits 0 and prints the lines
# that show its point. Usage: test_examples.sh NAME PROGRAM
set -u
name=$1
prog=$2
out=$("$prog" 2>&1)
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 0 ] || { echo "FAIL: $name exited with $rc"; exit 1; }

expect() {
    printf '%s\n' "$out" | grep -Eq -- "$1" || { echo "FAIL: $name: no line matching /$1/"; exit 1; }
}

case $name in
create_tasks)
    for i in 1 2 3 4 5; do expect "created task $i square\\($i\\)"; done
    expect 'square\(4\) -> 16$'
    expect '^all 5 tasks done'
    ;;
all_tasks)
    expect '^all_tasks while busy: 6 unfinished'
    expect 'job-1 +running +[0-9]+ ms'
    expect 'job-5 +pending +[0-9]+ ms'
    expect 'reply +pending'
    expect '^all_tasks after wait: 0 unfinished'
    ;;
cancel)
    expect '^pending after the limit: 4$'
    expect 'request 10: cancelled'
    expect '^served: 4, cancelled: 6$'
    ;;
as_completed)
    expect '^  finished #1: task-2 after 10 ms'
    expect '^5 of 5 yielded'
    ;;
gather)
    expect 'results \(input order\): task-1=500 task-2=100 task-3=400 task-4=200 task-5=300$'
    expect 'asyncio.s gather keeps'
    ;;
wait)
    line=$(printf '%s\n' "$out" | grep -E '^done: [0-9]+, handed to slow path: [0-9]+$')
    [ -n "$line" ] || { echo "FAIL: wait: no summary line"; exit 1; }
    total=$(printf '%s\n' "$line" | awk -F'[:,] *' '{print $2 + $4}')
    [ "$total" -eq 10 ] || { echo "FAIL: wait: summary counts $total calls, not 10"; exit 1; }
    slow=$(printf '%s\n' "$line" | awk -F'[:,] *' '{print $4}')
    reported=$(printf '%s\n' "$out" | grep -c '^  slow path ')
    [ "$reported" -eq "$slow" ] || { echo "FAIL: wait: slow path reported $reported of $slow"; exit 1; }
    ;;
*)
    echo "FAIL: unknown example $name"
    exit 1
    ;;
esac
echo "PASS: $name"
