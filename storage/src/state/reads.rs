//! The [`Backend`](crate::Backend) reads of an in-memory [`State`](super::State), as a macro
//! both backends expand.

/// The read methods of [`Backend`](crate::Backend) for a backend whose data is a
/// [`State`](crate::state::State) in the field `$state`: the embedded store and the
/// PostgreSQL replica read the same memory the same way.
#[macro_export]
macro_rules! state_reads {
    ($state:ident) => {
        fn tenant(&self, id: &str) -> Option<$crate::model::Tenant> {
            self.$state.tenant(id)
        }
        fn tenants(
            &self,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::Tenant> {
            self.$state.tenants(page)
        }
        fn user(&self, tenant: &str, id: &str) -> Option<$crate::model::User> {
            self.$state.user(tenant, id)
        }
        fn users_by_email(&self, email: &str) -> Vec<(String, $crate::model::User)> {
            self.$state.users_by_email(email)
        }
        fn users(
            &self,
            tenant: &str,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::User> {
            self.$state.users(tenant, page)
        }
        fn api_key_by_digest(&self, digest: &[u8; 32]) -> Option<(String, $crate::model::ApiKey)> {
            self.$state.api_key_by_digest(digest)
        }
        fn api_key(&self, tenant: &str, id: &str) -> Option<$crate::model::ApiKey> {
            self.$state.api_key(tenant, id)
        }
        fn api_keys(
            &self,
            tenant: &str,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::ApiKey> {
            self.$state.api_keys(tenant, page)
        }
        fn project(&self, tenant: &str, id: &str) -> Option<$crate::model::Project> {
            self.$state.project(tenant, id)
        }
        fn projects(
            &self,
            tenant: &str,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::Project> {
            self.$state.projects(tenant, page)
        }
        fn traces(
            &self,
            tenant: &str,
            project_id: &str,
            session_id: &str,
        ) -> Option<Vec<$crate::model::TraceEvent>> {
            self.$state.traces(tenant, project_id, session_id)
        }
        fn tool(&self, tenant: &str, project_id: &str, id: &str) -> Option<$crate::model::Tool> {
            self.$state.tool(tenant, project_id, id)
        }
        fn tool_by_name(
            &self,
            tenant: &str,
            project_id: &str,
            name: &str,
        ) -> Option<$crate::model::Tool> {
            self.$state.tool_by_name(tenant, project_id, name)
        }
        fn tools(
            &self,
            tenant: &str,
            project_id: &str,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::Tool> {
            self.$state.tools(tenant, project_id, page)
        }
        fn agent_versions(
            &self,
            tenant: &str,
            project_id: &str,
            name: &str,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::AgentVersion> {
            self.$state.agent_versions(tenant, project_id, name, page)
        }
        fn agent_version(
            &self,
            tenant: &str,
            project_id: &str,
            name: &str,
            n: u32,
        ) -> Option<$crate::model::AgentVersion> {
            self.$state.agent_version(tenant, project_id, name, n)
        }
        fn analytics(
            &self,
            tenant: &str,
            project_id: &str,
            from_ms: u64,
            to_ms: u64,
            by: $crate::state::rollup::GroupBy,
        ) -> Vec<($crate::state::rollup::Group, $crate::state::rollup::Rollup)> {
            self.$state
                .analytics(tenant, project_id, from_ms, to_ms, by)
        }
        fn feedback(
            &self,
            tenant: &str,
            project_id: &str,
            session_id: &str,
        ) -> Vec<$crate::model::Feedback> {
            self.$state.feedback(tenant, project_id, session_id)
        }
        fn session_deployment(
            &self,
            tenant: &str,
            project_id: &str,
            session_id: &str,
        ) -> Option<String> {
            self.$state
                .session_deployment(tenant, project_id, session_id)
        }
        fn deployment(
            &self,
            tenant: &str,
            project_id: &str,
            id: &str,
        ) -> Option<$crate::model::Deployment> {
            self.$state.deployment(tenant, project_id, id)
        }
        fn deployments(&self, tenant: &str, project_id: &str) -> Vec<$crate::model::Deployment> {
            self.$state.deployments(tenant, project_id)
        }
        fn agent(&self, tenant: &str, project_id: &str, id: &str) -> Option<$crate::model::Agent> {
            self.$state.agent(tenant, project_id, id)
        }
        fn agent_by_name(
            &self,
            tenant: &str,
            project_id: &str,
            name: &str,
        ) -> Option<$crate::model::Agent> {
            self.$state.agent_by_name(tenant, project_id, name)
        }
        fn agents(
            &self,
            tenant: &str,
            project_id: Option<&str>,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::Agent> {
            self.$state.agents(tenant, project_id, page)
        }
        fn agents_named(&self, tenant: &str, name: &str) -> Vec<$crate::model::Agent> {
            self.$state.agents_named(tenant, name)
        }
        fn session(
            &self,
            tenant: &str,
            project_id: &str,
            id: &str,
        ) -> Option<$crate::model::Session> {
            self.$state.session(tenant, project_id, id)
        }
        fn locate_session(&self, id: &str) -> Option<(String, String)> {
            self.$state.locate_session(id)
        }
        fn each_session(
            &self,
            tenant: &str,
            project_id: &str,
            filter: &$crate::backend::SessionFilter<'_>,
            page: $crate::backend::Page,
            visit: &mut dyn FnMut(&$crate::model::Session),
        ) -> usize {
            self.$state
                .each_session(tenant, project_id, filter, page, visit)
        }
        fn active_session_count(&self, tenant: &str) -> u64 {
            self.$state.active_session_count(tenant)
        }
        fn messages(
            &self,
            tenant: &str,
            project_id: &str,
            session_id: &str,
            page: $crate::backend::Page,
        ) -> Option<$crate::backend::Listed<$crate::model::Message>> {
            self.$state.messages(tenant, project_id, session_id, page)
        }
        fn usage_totals(
            &self,
            tenant: &str,
            project_id: &str,
            from: u64,
            to: u64,
            keep: Option<&dyn Fn(&str) -> bool>,
        ) -> Vec<(String, $crate::state::usage::UsageTotals)> {
            self.$state.usage_totals(tenant, project_id, from, to, keep)
        }
        fn secret(
            &self,
            tenant: &str,
            project_id: &str,
            name: &str,
        ) -> Option<$crate::model::Secret> {
            self.$state.secret(tenant, project_id, name)
        }
        fn secrets(
            &self,
            tenant: &str,
            project_id: &str,
            page: $crate::backend::Page,
        ) -> $crate::backend::Listed<$crate::model::Secret> {
            self.$state.secrets(tenant, project_id, page)
        }
        fn public_key_by_digest(
            &self,
            digest: &[u8; 32],
        ) -> Option<(String, $crate::model::PublicKey)> {
            self.$state.public_key_by_digest(digest)
        }
        fn public_keys(&self, tenant: &str, project_id: &str) -> Vec<$crate::model::PublicKey> {
            self.$state.public_keys(tenant, project_id)
        }
        fn origin_registered(&self, origin: &str) -> bool {
            self.$state.origin_registered(origin)
        }
        fn stream_events_after(
            &self,
            tenant: &str,
            stream_id: &str,
            after: u64,
        ) -> Option<$crate::backend::StreamReplay> {
            self.$state.stream_events_after(tenant, stream_id, after)
        }
        fn meta(&self, key: &str) -> Option<Vec<u8>> {
            self.$state.meta(key)
        }
    };
}
