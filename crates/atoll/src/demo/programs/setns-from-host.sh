# A host process tricked into handing a tenant the host's network namespace: it opens
# /proc/self/ns/net as fd 3 and `atoll exec --preserve-fds 1` passes it into the island.
# Arguments: ATOLL ROOT CONTAINER-ID PYTHON-PROGRAM
exec 3</proc/self/ns/net
exec "$1" --root "$2" exec --preserve-fds 1 "$3" /usr/bin/python3 -c "$4"
