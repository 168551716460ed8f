//! Changes to the Samba AD DC under test, made the way an administrator's tools make
//! them: LDIF through `ldapmodify` over verified LDAPS as the domain administrator
//! ([`modify`] does the same for slapd).

use super::env;
use std::io::Write;
use std::process::{Command, Stdio};

/// Apply an LDIF change set (`changetype:` records, or plain entries with `add = true`).
pub fn ldif(text: &str, add: bool) {
    modify(
        &env("TANSYNC_TEST_SAMBA_LDAPS_URL"),
        &env("TANSYNC_TEST_SAMBA_BIND_DN"),
        &env("TANSYNC_TEST_SAMBA_PASSWORD_FILE"),
        text,
        add,
    );
}

/// `ldapmodify` an LDIF change set into the server at `url` (verified LDAPS, the test
/// CA), bound as `bind_dn`: Samba's or slapd's administrator.
pub fn modify(url: &str, bind_dn: &str, password_file: &str, text: &str, add: bool) {
    let mut cmd = Command::new("ldapmodify");
    cmd.env("LDAPTLS_CACERT", env("TANSYNC_TEST_CA"))
        .env("LDAPTLS_REQCERT", "demand")
        .args(["-x", "-H", url, "-D", bind_dn, "-y", password_file]);
    if add {
        cmd.arg("-a");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ldapmodify (ldap-utils)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write LDIF");
    let out = child.wait_with_output().expect("ldapmodify");
    assert!(
        out.status.success(),
        "ldapmodify failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        text
    );
}

/// A fresh OU directly under the domain, unique to this run and test.
pub fn fresh_ou(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let ou = format!(
        "OU={name}-{}-{nanos:x},{}",
        std::process::id(),
        env("TANSYNC_TEST_SAMBA_BASE")
    );
    ldif(
        &format!("dn: {ou}\nobjectClass: organizationalUnit\n"),
        true,
    );
    ou
}

pub fn add_ou(dn: &str) {
    ldif(
        &format!("dn: {dn}\nobjectClass: organizationalUnit\n"),
        true,
    );
}

/// A person as the fixture writes them: enabled (544) or disabled (546), no password.
pub struct User<'a> {
    pub cn: &'a str,
    pub given: &'a str,
    pub family: &'a str,
    pub title: &'a str,
    pub enabled: bool,
}

/// Add people under `parent`. Their employee id is `E-` and the CN lowercased with dots
/// (`Ann Ash` → `E-ann.ash`); the sAMAccountName, unique in the domain, is generated so
/// that tests and reruns against the same DC never clash.
pub fn add_users(parent: &str, users: &[User]) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut text = String::new();
    for u in users {
        text.push_str(&format!(
            "dn: CN={cn},{parent}\nobjectClass: user\nsAMAccountName: t{nanos:08x}{n:05}\ngivenName: {g}\nsn: {f}\ndisplayName: {g} {f}\ntitle: {t}\nemployeeID: E-{emp}\nuserAccountControl: {uac}\n\n",
            cn = u.cn,
            n = N.fetch_add(1, Ordering::Relaxed) % 100_000,
            emp = u.cn.to_lowercase().replace(' ', "."),
            g = u.given,
            f = u.family,
            t = u.title,
            uac = if u.enabled { 544 } else { 546 },
        ));
    }
    ldif(&text, true);
}

pub fn set_enabled(dn: &str, enabled: bool) {
    ldif(
        &format!(
            "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n-\n",
            if enabled { 544 } else { 546 }
        ),
        false,
    );
}

pub fn replace(dn: &str, attr: &str, value: &str) {
    ldif(
        &format!("dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n-\n"),
        false,
    );
}

/// Move an entry under another parent, keeping its RDN (and so its objectGUID).
pub fn move_to(dn: &str, new_parent: &str) {
    let rdn = dn.split(',').next().expect("rdn");
    ldif(
        &format!(
            "dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 1\nnewsuperior: {new_parent}\n"
        ),
        false,
    );
}

/// The values of one attribute of one entry (base search over verified LDAPS).
pub fn values(dn: &str, attr: &str) -> Vec<String> {
    let out = Command::new("ldapsearch")
        .env("LDAPTLS_CACERT", env("TANSYNC_TEST_CA"))
        .env("LDAPTLS_REQCERT", "demand")
        .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H"])
        .arg(env("TANSYNC_TEST_SAMBA_LDAPS_URL"))
        .arg("-D")
        .arg(env("TANSYNC_TEST_SAMBA_BIND_DN"))
        .arg("-y")
        .arg(env("TANSYNC_TEST_SAMBA_PASSWORD_FILE"))
        .args(["-s", "base", "-b", dn, "(objectClass=*)", attr])
        .output()
        .expect("run ldapsearch");
    assert!(
        out.status.success(),
        "ldapsearch {dn}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let prefix = format!("{}: ", attr.to_ascii_lowercase());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[prefix.len()..].to_string())
        .collect()
}
