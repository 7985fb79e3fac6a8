# GET / from the web server at $1:80, with busybox only.
printf 'GET / HTTP/1.0\r\n\r\n' | /bin/busybox nc -w 2 "$1" 80
