//! The two pages emailed links open: `/verify-email?token=` and `/reset-password?token=`.
//! Opening a link changes nothing (mail scanners prefetch links and would use the token up);
//! the page posts the token to the API when the person confirms.

use poem::handler;
use poem::web::Html;

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;\
padding:0 1rem}button{font-size:1rem;padding:.5rem 1rem}input{font-size:1rem;padding:.4rem;\
width:100%;box-sizing:border-box;margin:.5rem 0}#out{margin-top:1rem;white-space:pre-wrap}";

fn page(title: &str, body: &str, script: &str) -> Html<String> {
    Html(format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport \
         content='width=device-width'><meta name=referrer content=no-referrer>\
         <title>{title}</title><style>{STYLE}</style></head><body><h1>{title}</h1>{body}\
         <div id=out role=status></div><script>const token=new URLSearchParams(location.search)\
         .get('token')||'';const out=document.getElementById('out');{script}</script></body></html>"
    ))
}

/// `GET /verify-email?token=`: confirms the address with one click.
#[handler]
pub fn verify_email() -> Html<String> {
    page(
        "Confirm your email address",
        "<p>Confirm the address you signed up to CallFlex with.</p>\
         <button id=go>Confirm</button>",
        "document.getElementById('go').onclick=async()=>{const r=await fetch(\
         '/api/v1/auth/verify-email',{method:'POST',headers:{'content-type':'application/json'},\
         body:JSON.stringify({token})});const b=await r.json().catch(()=>({}));out.textContent=\
         r.ok?'Confirmed. Your session token (shown once):\\n'+b.token:\
         'Not confirmed: '+((b.error||{}).message||r.status);};",
    )
}

/// `GET /reset-password?token=`: sets a new password.
#[handler]
pub fn reset_password() -> Html<String> {
    page(
        "Choose a new password",
        "<label>New password<input id=pw type=password autocomplete=new-password></label>\
         <button id=go>Set password</button>",
        "document.getElementById('go').onclick=async()=>{const password=\
         document.getElementById('pw').value;const r=await fetch('/api/v1/auth/reset-password',\
         {method:'POST',headers:{'content-type':'application/json'},body:JSON.stringify(\
         {token,password})});const b=await r.json().catch(()=>({}));out.textContent=r.ok?\
         'Password changed. Sign in with it; every other session was signed out.':\
         'Not changed: '+((b.error||{}).message||r.status);};",
    )
}
