"""Certificate-backed SSH into sandboxes: the CA (`ca`), sshd inside a sandbox (`sshd`),
the relay that carries connections to it (`relay`), issuing access (`access`), and the
/v1 route (`api`). docs/ssh.md."""
